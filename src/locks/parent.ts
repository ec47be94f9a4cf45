import { describeValue, optionsProblems } from '../arguments';
import { LockConfigError, StaleEntityError } from '../errors';
import { declare, type AroundCreateContext, type AroundCreateHook } from '../metadata/registry';
import type { Installation } from '../orm/installations';
import type { EntityDescriptor, PortConnection } from '../orm/port';
import { lockRowOn } from './row-lock';
import type { RowLockOptions } from './row-lock-options';

/** What the function form of `lockParent` may return: an entity, a partial `{ id }`, a bare id, or nothing. */
export type ParentRef = object | string | number | bigint | null | undefined;

/** What ormlock passes to `@AroundCreate` hooks: the documented context plus the installation and the entity's descriptor. */
export interface AroundCreateRunContext extends AroundCreateContext {
  readonly installation: Installation;
  /** The entity being inserted (also for plain value objects given to `insert()`). */
  readonly descriptor: EntityDescriptor;
}

export type { AroundCreateContext, AroundCreateHook } from '../metadata/registry';

/** Options of `lockParent`. The parent class's `@Pessimistic` policy applies under these. */
export interface ParentLockOptions extends RowLockOptions {
  /**
   * When the entity names no parent (relation and join column both empty): `true` inserts
   * without a lock, `false` throws LockConfigError. Default: the relation's nullability (a
   * nullable relation and join column — a tree's root — insert; a NOT NULL one throws); the
   * function form defaults to `false`.
   */
  optional?: boolean;
  /**
   * The parent's entity class, for the function form when it returns a plain object
   * (`{ id: 5 }`) or a bare id instead of an entity instance.
   */
  target?: () => Function;
}

/** What `lockParent(...)` returns: an `@AroundCreate` hook that also says what it locks. */
export interface ParentLockHook<E = any> extends AroundCreateHook<E> {
  /** The relation property it locks through, for the string form (checked at installLocking). */
  readonly relation?: string;
  /** The whole declaration, read by installLocking's validation. */
  readonly parentLock: ParentLockDeclaration;
}

export interface ParentLockDeclaration {
  readonly relation?: string;
  readonly resolve?: (entity: any) => ParentRef | Promise<ParentRef>;
  readonly options: ParentLockOptions;
}

/**
 * The built-in `@AroundCreate` hook (the seed's `around_create :save_with_lock`): inside the
 * INSERT's transaction and before anything else computes the new row, locks the parent row
 * with `SELECT … FOR UPDATE` on the INSERT's own connection and reloads it, so concurrent
 * creations of siblings serialize while creations under other parents run in parallel.
 *
 * ```ts
 * @AroundCreate(lockParent('site'))             // a ManyToOne / owning OneToOne relation
 * @Entity() class Page { @ManyToOne(() => Site) site!: Site; @Column() siteId!: number; … }
 *
 * @AroundCreate(lockParent((page: Page) => page.site))   // or a function returning the parent
 * ```
 * The entity may hold the parent object, a partial `{ id }`, a bare id on the relation, or only
 * the join column (`siteId`); in every case the reloaded parent ends up on the relation
 * property when it was empty. The parent class's `@Pessimistic` policy (mode, timeoutMs,
 * onLocked) applies, overridden by `options`. A parent row that does not exist throws
 * `StaleEntityError` naming the entity and relation, and nothing is inserted.
 */
export function lockParent<E = any>(
  relationOrResolve: string | ((entity: E) => ParentRef | Promise<ParentRef>),
  options: ParentLockOptions = {},
): ParentLockHook<E> {
  if (typeof relationOrResolve !== 'string' && typeof relationOrResolve !== 'function') {
    throw new LockConfigError(`lockParent(relation, options?): expected a relation name or a function (entity) => parent (got ${describeValue(relationOrResolve)})`);
  }
  if (typeof relationOrResolve === 'string' && relationOrResolve.length === 0) {
    throw new LockConfigError('lockParent(): the relation name is empty');
  }
  const problems = optionsProblems(options);
  if (problems.length) throw new LockConfigError(`lockParent(relation, options?): ${problems.join('; ')}`);
  if (options.target !== undefined && typeof options.target !== 'function') {
    throw new LockConfigError('lockParent(): options.target must be a function returning the parent entity class, e.g. () => Site');
  }
  const declaration: ParentLockDeclaration =
    typeof relationOrResolve === 'string'
      ? { relation: relationOrResolve, options }
      : { resolve: relationOrResolve as ParentLockDeclaration['resolve'], options };
  const hook = ((entity: E, ctx: AroundCreateContext) => lockParentOf(entity as object, declaration, ctx as AroundCreateRunContext)) as ParentLockHook<E>;
  Object.defineProperty(hook, 'name', { value: `lockParent(${declaration.relation ?? 'fn'})` });
  Object.defineProperty(hook, 'relation', { value: declaration.relation, enumerable: true });
  Object.defineProperty(hook, 'parentLock', { value: declaration, enumerable: true });
  return hook;
}

/** True for a hook made by `lockParent`. */
export function isParentLockHook(hook: unknown): hook is ParentLockHook {
  return typeof hook === 'function' && (hook as Partial<ParentLockHook>).parentLock !== undefined;
}

/**
 * The plain-function twin of `@AroundCreate(...hooks)`: appends hooks to `entityClass`
 * (they run in the order given, after hooks already registered).
 */
export function addAroundCreate(entityClass: Function, ...hooks: AroundCreateHook[]): void {
  checkHooks(entityClass, hooks);
  declare(entityClass, (rec) => rec.aroundCreate.push(...hooks));
}

/** @internal The decorator's registration: class decorators apply bottom-up, so it prepends. */
export function prependAroundCreate(entityClass: Function, hooks: AroundCreateHook[]): void {
  checkHooks(entityClass, hooks);
  declare(entityClass, (rec) => rec.aroundCreate.unshift(...hooks));
}

function checkHooks(entityClass: Function, hooks: AroundCreateHook[]): void {
  if (typeof entityClass !== 'function') {
    throw new LockConfigError(`@AroundCreate / addAroundCreate(entityClass, ...hooks): expected an entity class (got ${describeValue(entityClass)})`);
  }
  if (hooks.length === 0) {
    throw new LockConfigError(`@AroundCreate on ${entityClass.name}: give at least one hook, e.g. @AroundCreate(lockParent('site'))`, {
      entity: entityClass.name,
    });
  }
  hooks.forEach((hook, i) => {
    if (typeof hook !== 'function') {
      throw new LockConfigError(
        `@AroundCreate on ${entityClass.name}: hook ${i + 1} is ${describeValue(hook)}, expected a function (entity, { manager, queryRunner }) => …`,
        { entity: entityClass.name },
      );
    }
  });
}

/**
 * The body of a `lockParent` hook: finds the parent row the new entity points at, locks it on
 * the INSERT's connection and reloads it into the entity.
 */
export async function lockParentOf(object: object, decl: ParentLockDeclaration, ctx: AroundCreateRunContext): Promise<object | undefined> {
  if (!ctx || !ctx.installation || !ctx.descriptor) {
    throw new LockConfigError('lockParent(): the hook runs from ormlock\'s write path (installLocking), not called directly');
  }
  const connection = ctx.queryRunner as PortConnection;
  return decl.relation !== undefined
    ? lockThroughRelation(ctx.installation, connection, ctx.descriptor, object, decl.relation, decl.options)
    : lockResolved(ctx.installation, connection, ctx.descriptor, object, decl);
}

async function lockThroughRelation(
  inst: Installation,
  connection: PortConnection,
  entity: EntityDescriptor,
  object: object,
  relation: string,
  options: ParentLockOptions,
): Promise<object | undefined> {
  const subject = `lockParent('${relation}') on ${entity.name}`;
  const found = inst.port.locateParent(entity, relation, object);
  if (found.kind === 'new') return undefined; // created in this same write: nobody else can see it yet
  if (found.kind === 'none') {
    if (options.optional ?? found.nullable) return undefined;
    throw new LockConfigError(
      `${subject}: the new ${entity.name} names no parent: ${found.hint}` +
        ` (or declare lockParent('${relation}', { optional: true }) for a parent that may be empty).`,
      { entity: entity.name, relation },
    );
  }
  const fresh = await lockRowOn(inst, connection, found.parent, found.where, options, subject, 'parent');
  if (!fresh) throw missingParent(subject, entity.name, found.parent.name, relation, found.where);
  if (found.object) inst.port.refresh(found.parent, found.object, fresh);
  else inst.port.attachParent(entity, relation, object, fresh);
  return found.object ?? fresh;
}

async function lockResolved(
  inst: Installation,
  connection: PortConnection,
  entity: EntityDescriptor,
  object: object,
  decl: ParentLockDeclaration,
): Promise<object | undefined> {
  const subject = `lockParent(fn) on ${entity.name}`;
  const ref = await decl.resolve!(object);
  if (ref === null || ref === undefined) {
    if (decl.options.optional) return undefined;
    throw new LockConfigError(`${subject}: the function returned ${String(ref)} for the new ${entity.name} (declare { optional: true } to allow no parent).`, {
      entity: entity.name,
    });
  }
  const target = decl.options.target?.() ?? (typeof ref === 'object' ? ref.constructor : undefined);
  const parent = typeof target === 'function' ? inst.port.describe(target) : undefined;
  if (!parent) {
    throw new LockConfigError(
      `${subject}: the function returned ${typeof ref === 'object' ? `a ${ref.constructor?.name ?? 'plain'} object` : `a bare ${typeof ref}`}, ` +
        `which is not an entity of ${inst.label}; return the parent entity or pass { target: () => ParentClass }.`,
      { entity: entity.name },
    );
  }
  let where: Record<string, unknown>;
  if (typeof ref === 'object') where = inst.port.idOf(parent, ref);
  else if (parent.primaryKeys.length === 1) where = { [parent.primaryKeys[0]]: ref };
  else throw new LockConfigError(`${subject}: ${parent.name} has a composite key; return an object, not a bare id.`, { entity: entity.name });
  if (Object.values(where).some((v) => v === undefined || v === null)) {
    throw new LockConfigError(`${subject}: the ${parent.name} returned has no primary-key value; save it first.`, { entity: entity.name });
  }
  const fresh = await lockRowOn(inst, connection, parent, where, decl.options, subject, 'parent');
  if (!fresh) throw missingParent(subject, entity.name, parent.name, undefined, where);
  if (typeof ref === 'object') inst.port.refresh(parent, ref, fresh);
  return typeof ref === 'object' ? ref : fresh;
}

function missingParent(subject: string, entity: string, parent: string, relation: string | undefined, where: Record<string, unknown>): StaleEntityError {
  const id = Object.keys(where).length === 1 ? Object.values(where)[0] : where;
  return new StaleEntityError(
    `${subject}: ${parent} ${JSON.stringify(where)} does not exist (deleted, or never created); the ${entity} was not inserted.`,
    { entity, id, relation, parent },
  );
}
