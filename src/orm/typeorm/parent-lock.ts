import type { EntityMetadata, QueryRunner } from 'typeorm';
import type { RelationMetadata } from 'typeorm/metadata/RelationMetadata';
import { LockConfigError, StaleEntityError } from '../../errors';
import type { ParentLockDeclaration } from '../../locks/parent';
import type { AroundCreateContext } from '../../metadata/registry';
import { lockRowOn, refreshInPlace } from './row-lock';

export { lockRowOn };

/** What the function form of `lockParent` may return: an entity, a partial `{ id }`, a bare id, or nothing. */
export type ParentRef = object | string | number | bigint | null | undefined;

/** What ormlock passes to `@AroundCreate` hooks: the documented context plus the entity's metadata. */
export interface AroundCreateRunContext extends AroundCreateContext {
  /** Metadata of the entity being inserted (also for plain value objects given to `insert()`). */
  readonly metadata: EntityMetadata;
}

/** The relation `lockParent('name')` locks through, or a LockConfigError saying why it cannot. */
export function parentRelation(meta: EntityMetadata, name: string): RelationMetadata {
  const subject = `lockParent('${name}') on ${meta.name}`;
  const relation = meta.findRelationWithPropertyPath(name);
  if (!relation) {
    const owners = meta.relations.filter((r) => r.isManyToOne || r.isOneToOneOwner).map((r) => `'${r.propertyPath}'`);
    throw new LockConfigError(
      `${subject}: ${meta.name} has no relation '${name}'` + (owners.length ? ` (its parent relations: ${owners.join(', ')})` : ''),
      { entity: meta.name, relation: name },
    );
  }
  if (!(relation.isManyToOne || relation.isOneToOneOwner) || relation.joinColumns.length === 0) {
    throw new LockConfigError(
      `${subject}: '${name}' is a ${relation.relationType} relation${relation.isOneToOne ? ' without the join column' : ''}; ` +
        `lockParent needs a ManyToOne or owning OneToOne relation (the side with the join column).`,
      { entity: meta.name, relation: name },
    );
  }
  return relation;
}

/**
 * The body of a `lockParent` hook: finds the parent row the new entity points at, locks it on
 * the INSERT's connection and reloads it into the entity.
 */
export async function lockParentOf(entity: object, decl: ParentLockDeclaration, ctx: AroundCreateContext): Promise<object | undefined> {
  const queryRunner = ctx.queryRunner;
  const ds = queryRunner.dataSource;
  const meta: EntityMetadata = (ctx as Partial<AroundCreateRunContext>).metadata ?? ds.getMetadata(entity.constructor);
  return decl.relation !== undefined
    ? lockThroughRelation(entity, meta, decl.relation, decl.options, queryRunner)
    : lockResolved(entity, meta, decl, queryRunner);
}

async function lockThroughRelation(
  entity: object,
  meta: EntityMetadata,
  name: string,
  options: ParentLockDeclaration['options'],
  queryRunner: QueryRunner,
): Promise<object | undefined> {
  const relation = parentRelation(meta, name);
  const subject = `lockParent('${name}') on ${meta.name}`;
  const parentMeta = relation.inverseEntityMetadata;
  const value = relation.getEntityValue(entity);
  const where: Record<string, unknown> = {};
  let parentObject: object | undefined;

  if (value !== null && typeof value === 'object') {
    parentObject = value;
    for (const jc of relation.joinColumns) where[jc.referencedColumn!.propertyPath] = jc.referencedColumn!.getEntityValue(value);
    if (Object.values(where).some((v) => v === undefined || v === null)) {
      // A parent created by cascade in this same save: nobody else can see it yet, nothing to lock.
      if (relation.isCascadeInsert) return undefined;
      throw new LockConfigError(
        `${subject}: the ${parentMeta.name} in '${name}' has no ${Object.keys(where).join(', ')}; save it first (or let the relation cascade inserts).`,
        { entity: meta.name, relation: name },
      );
    }
  } else if (value !== null && value !== undefined) {
    if (relation.joinColumns.length !== 1) {
      throw new LockConfigError(`${subject}: '${name}' holds a bare id but the relation has a composite key; give an object.`, {
        entity: meta.name,
        relation: name,
      });
    }
    where[relation.joinColumns[0].referencedColumn!.propertyPath] = value;
  } else if (value === undefined) {
    for (const jc of relation.joinColumns) {
      const v = joinColumnValue(entity, meta, relation, jc);
      if (v === undefined || v === null) break;
      where[jc.referencedColumn!.propertyPath] = v;
    }
    if (Object.keys(where).length !== relation.joinColumns.length) {
      for (const k of Object.keys(where)) delete where[k];
    }
  }

  if (Object.keys(where).length === 0) {
    if (options.optional ?? relationIsNullable(relation)) return undefined;
    const columns = relation.joinColumns
      .map((jc) => meta.columns.find((c) => c.databaseName === jc.databaseName && c.propertyName !== relation.propertyName)?.propertyName)
      .filter(Boolean);
    throw new LockConfigError(
      `${subject}: the new ${meta.name} names no ${parentMeta.name}: set '${name}'` +
        (columns.length ? ` or '${columns.join("', '")}'` : '') +
        ` (or declare lockParent('${name}', { optional: true }) for a nullable parent).`,
      { entity: meta.name, relation: name },
    );
  }

  const fresh = await lockRowOn<object>(queryRunner, parentMeta, where, options, subject);
  if (!fresh) throw missingParent(subject, meta.name, parentMeta.name, name, where);
  if (parentObject) refreshInPlace(parentMeta, parentObject, fresh);
  else if (!relation.isLazy) relation.setEntityValue(entity, fresh);
  return parentObject ?? fresh;
}

async function lockResolved(
  entity: object,
  meta: EntityMetadata,
  decl: ParentLockDeclaration,
  queryRunner: QueryRunner,
): Promise<object | undefined> {
  const subject = `lockParent(fn) on ${meta.name}`;
  const ref = await decl.resolve!(entity);
  if (ref === null || ref === undefined) {
    if (decl.options.optional) return undefined;
    throw new LockConfigError(`${subject}: the function returned ${String(ref)} for the new ${meta.name} (declare { optional: true } to allow no parent).`, {
      entity: meta.name,
    });
  }
  const ds = queryRunner.dataSource;
  const target = decl.options.target?.() ?? (typeof ref === 'object' ? ref.constructor : undefined);
  if (!target || !ds.hasMetadata(target)) {
    throw new LockConfigError(
      `${subject}: the function returned ${typeof ref === 'object' ? `a ${ref.constructor?.name ?? 'plain'} object` : `a bare ${typeof ref}`}, ` +
        `which is not an entity of this DataSource; return the parent entity or pass { target: () => ParentClass }.`,
      { entity: meta.name },
    );
  }
  const parentMeta = ds.getMetadata(target);
  const where: Record<string, unknown> = {};
  if (typeof ref === 'object') {
    for (const c of parentMeta.primaryColumns) where[c.propertyPath] = c.getEntityValue(ref);
  } else if (parentMeta.primaryColumns.length === 1) {
    where[parentMeta.primaryColumns[0].propertyPath] = ref;
  } else {
    throw new LockConfigError(`${subject}: ${parentMeta.name} has a composite key; return an object, not a bare id.`, { entity: meta.name });
  }
  if (Object.values(where).some((v) => v === undefined || v === null)) {
    throw new LockConfigError(`${subject}: the ${parentMeta.name} returned has no primary-key value; save it first.`, { entity: meta.name });
  }
  const fresh = await lockRowOn<object>(queryRunner, parentMeta, where, decl.options, subject);
  if (!fresh) throw missingParent(subject, meta.name, parentMeta.name, undefined, where);
  if (typeof ref === 'object') refreshInPlace(parentMeta, ref, fresh);
  return typeof ref === 'object' ? ref : fresh;
}

/**
 * Whether the relation may be empty: TypeORM's own nullability of the relation and of every
 * join column (a `@Column() siteId: number` doubling as the join column is NOT NULL even though
 * the ManyToOne, by TypeORM's default, is nullable). `lockParent`'s `optional` defaults to it.
 */
export function relationIsNullable(relation: RelationMetadata): boolean {
  return relation.isNullable && relation.joinColumns.every((jc) => jc.isNullable);
}

/**
 * The value of a join column when the relation property is empty: the user's own column that
 * doubles as the join column (`@Column() siteId` + `@JoinColumn({ name: 'siteId' })`).
 */
function joinColumnValue(entity: object, meta: EntityMetadata, relation: RelationMetadata, jc: RelationMetadata['joinColumns'][number]): unknown {
  const own = meta.columns.find((c) => c.databaseName === jc.databaseName && c.propertyName !== relation.propertyName && !c.isVirtual);
  if (own) return own.getEntityValue(entity);
  if (jc.propertyName !== relation.propertyName) return jc.getEntityValue(entity);
  return undefined;
}

function missingParent(subject: string, entity: string, parent: string, relation: string | undefined, where: Record<string, unknown>): StaleEntityError {
  const id = Object.keys(where).length === 1 ? Object.values(where)[0] : where;
  return new StaleEntityError(
    `${subject}: ${parent} ${JSON.stringify(where)} does not exist (deleted, or never created); the ${entity} was not inserted.`,
    { entity, id, relation, parent },
  );
}
