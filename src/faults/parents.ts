/**
 * The faults of `@AroundCreate` and `lockParent` (src/locks/parent.ts, the adapters' parent
 * lookups and install-time checks): a hook that cannot run, a relation that cannot lead to a
 * parent, a parent that cannot be found. One factory per fault, one wording for every ORM; the
 * caller throws what it returns. Shared faults (a wrong argument) are in ./options.
 */
import { describeValue } from '../describe-value';
import { LockConfigError, StaleEntityError } from '../errors';

/** `@AroundCreate` with no hook. */
export function noHooks(entity: string): LockConfigError {
  return new LockConfigError(`@AroundCreate on ${entity}: give at least one hook, e.g. @AroundCreate(lockParent('site'))`, { entity });
}

/** Hook number `i` (from 1) is not a function. */
export function hookNotAFunction(entity: string, i: number, hook: unknown): LockConfigError {
  return new LockConfigError(`@AroundCreate on ${entity}: hook ${i} is ${describeValue(hook)}, expected a function (entity, { manager, queryRunner }) => …`, {
    entity,
  });
}

/** A `lockParent` hook called by hand, not from ormlock's write path. */
export function hookCalledDirectly(): LockConfigError {
  return new LockConfigError("lockParent(): the hook runs from ormlock's write path (installLocking), not called directly");
}

/** `lockParent('name')` names no property of the entity; `owners` lists the relations it could name. */
export function noSuchRelation(subject: string, entity: string, relation: string, owners: readonly string[]): LockConfigError {
  return new LockConfigError(`${subject}: ${entity} has no relation '${relation}'` + (owners.length ? ` (its parent relations: ${owners.join(', ')})` : ''), {
    entity,
    relation,
  });
}

/** `lockParent('name')` names a property that does not point at a parent row; `kind` says what it is. */
export function notAParentRelation(subject: string, entity: string, relation: string, kind: string, owners: readonly string[]): LockConfigError {
  return new LockConfigError(
    `${subject}: '${relation}' is ${kind}; lockParent needs a ManyToOne or owning OneToOne relation (the side with the join column)` +
      (owners.length ? ` — ${entity}'s: ${owners.join(', ')}` : ''),
    { entity, relation },
  );
}

/** `options.target()` of `lockParent(fn)` is not an entity class of the installation (`of`: this DataSource, this MikroORM instance). */
export function targetNotAnEntity(subject: string, entity: string, of = 'this DataSource'): LockConfigError {
  return new LockConfigError(`${subject}: options.target() is not an entity class of ${of}`, { entity });
}

/** The new entity names no parent and the parent is not optional; `hint` says what to set. */
export function noParentNamed(subject: string, entity: string, relation: string, hint: string): LockConfigError {
  return new LockConfigError(
    `${subject}: the new ${entity} names no parent: ${hint} (or declare lockParent('${relation}', { optional: true }) for a parent that may be empty).`,
    { entity, relation },
  );
}

/** `lockParent(fn)`: the function returned null or undefined and the parent is not optional. */
export function resolvedNoParent(subject: string, entity: string, ref: unknown): LockConfigError {
  return new LockConfigError(`${subject}: the function returned ${String(ref)} for the new ${entity} (declare { optional: true } to allow no parent).`, {
    entity,
  });
}

/** `lockParent(fn)`: what the function returned is not an entity (`what` describes it). */
export function resolvedNotAnEntity(subject: string, entity: string, what: string, label: string): LockConfigError {
  return new LockConfigError(
    `${subject}: the function returned ${what}, which is not an entity of ${label}; return the parent entity or pass { target: () => ParentClass }.`,
    {
      entity,
    },
  );
}

/** The parent has no primary-key value yet (`where` says which parent: "in 'site'", "returned"). `save`: the ORM's verb. */
export function parentNotSaved(
  subject: string,
  entity: string,
  parent: string,
  where: string,
  keys: readonly string[],
  save: 'save' | 'persist',
  relation?: string,
): LockConfigError {
  return new LockConfigError(
    `${subject}: the ${parent} ${where} has no ${keys.join(', ')}; ${save} it first${relation ? ' (or let the relation cascade it)' : ''}.`,
    {
      entity,
      ...(relation ? { relation } : {}),
    },
  );
}

/** A bare id where the parent has a composite key (`what`: "'site' holds", "the function returned"). */
export function bareIdForCompositeKey(subject: string, entity: string, what: string, parent: string, relation?: string): LockConfigError {
  return new LockConfigError(`${subject}: ${what} a bare id but ${parent} has a composite key; give an object (the entity), not a bare id.`, {
    entity,
    ...(relation ? { relation } : {}),
  });
}

/** The parent row does not exist: the new entity was not inserted. */
export function missingParent(subject: string, entity: string, parent: string, relation: string | undefined, where: Record<string, unknown>): StaleEntityError {
  const id = Object.keys(where).length === 1 ? Object.values(where)[0] : where;
  return new StaleEntityError(`${subject}: ${parent} ${JSON.stringify(where)} does not exist (deleted, or never created); the ${entity} was not inserted.`, {
    entity,
    id,
    relation,
    parent,
  });
}
