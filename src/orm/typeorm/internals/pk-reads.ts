import { EntityManager, SelectQueryBuilder, type DataSource, type EntityMetadata, type QueryRunner } from 'typeorm';
import { ambientTx, readLockPolicy } from '../../../context/store';
import { runLockedRead } from '../../../locks/row-lock';
import { installationOf } from '../../../installations';
import { dataSourceOf } from '../compat';
import type { TypeOrmPort } from '../typeorm-port';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';
import { planFor, policyCovering } from './query-builder';

const LABEL = 'EntityManager.prototype';
const proto = EntityManager.prototype as any;

/**
 * Inside a `@Pessimistic` method, `findOneBy(Entity, { <primary key> })` and
 * `findOne(Entity, { where: { <primary key> } })` run the locked read prepared once per entity
 * (src/orm/typeorm/locked-read.ts) instead of building TypeORM's query from the find options: the
 * same statement and the same entity, without the builder's per-call work. Any other shape (more
 * options, other keys, an operator, a transformer on the key, eager relations, inheritance …)
 * goes TypeORM's own way, locked there as before.
 */
export const pkReadPatch: InternalPatch = {
  name: `${LABEL}.findOne / findOneBy (locked reads by primary key)`,
  probe: () => [
    ...expectMethod(proto, LABEL, 'findOneBy', ['setFindOptions']),
    ...expectMethod(proto, LABEL, 'findOne', ['setFindOptions']),
    // the prepared read hands its rows to TypeORM through loadRawResults
    ...expectMethod(SelectQueryBuilder.prototype, 'SelectQueryBuilder.prototype', 'executeEntitiesAndRawResults', ['loadRawResults']),
  ],
  apply() {
    const undoBy = replaceMethod(
      proto,
      'findOneBy',
      (base) =>
        function (this: EntityManager, target: unknown, where: unknown) {
          return fastRead(this, target, where) ?? base.call(this, target, where);
        },
    );
    const undoOne = replaceMethod(
      proto,
      'findOne',
      (base) =>
        function (this: EntityManager, target: unknown, options: unknown) {
          const where = onlyWhere(options);
          return (where && fastRead(this, target, where)) ?? base.call(this, target, options);
        },
    );
    return () => {
      undoOne();
      undoBy();
    };
  },
};

/** `options.where` when the options are `{ where }` and nothing else. */
function onlyWhere(options: unknown): unknown {
  if (options === null || typeof options !== 'object') return undefined;
  let where: unknown;
  for (const key in options) {
    if (key !== 'where') return undefined;
    where = (options as { where: unknown }).where;
  }
  return where;
}

/** The prepared locked read of `where` (a primary key) when one applies, else undefined (TypeORM's own path). */
function fastRead(manager: EntityManager, target: unknown, where: unknown): Promise<unknown> | undefined {
  if (!readLockPolicy()) return undefined; // outside @Pessimistic: TypeORM's own read, untouched
  if (where === null || typeof where !== 'object' || Array.isArray(where) || Object.getPrototypeOf(where) !== Object.prototype) return undefined;
  const qr = manager.queryRunner as QueryRunner | undefined;
  if (!qr) return undefined;
  const ds = dataSourceOf(manager);
  const inst = installationOf(ds);
  if (!inst || ambientTx(inst)?.connection !== qr || !qr.isTransactionActive) return undefined;
  const meta = metadataOf(ds!, target);
  if (!meta) return undefined;
  const policy = policyCovering(meta);
  if (!policy) return undefined;
  const keys = pkValues(meta, where as Record<string, unknown>);
  if (!keys) return undefined;
  const read = planFor(inst, meta, policy);
  if (!read) return undefined;
  const port = inst.port as TypeOrmPort;
  const plan = port.lockedReads.plan(meta, read.spec, inst.dialect.boundedRowLock);
  if (!plan) return undefined;
  const desc = port.descriptorOf(meta);
  return runLockedRead(inst, qr, desc, read.spec, 'row', () => port.lockedReads.run(plan, qr, keys), undefined, plan.bounded !== undefined);
}

/** Per DataSource: entity class → its metadata (TypeORM looks it up by a scan on every call). */
const metadataByClass = new WeakMap<object, WeakMap<Function, EntityMetadata | null>>();

/** The metadata of an entity class (undefined for a name, a schema, or a class the DataSource does not know: TypeORM's path). */
function metadataOf(ds: DataSource, target: unknown): EntityMetadata | undefined {
  if (typeof target !== 'function') return undefined;
  let byClass = metadataByClass.get(ds);
  if (!byClass) metadataByClass.set(ds, (byClass = new WeakMap()));
  let meta = byClass.get(target);
  if (meta === undefined) {
    meta = ds.hasMetadata(target) ? ds.getMetadata(target) : null;
    byClass.set(target, meta);
  }
  return meta ?? undefined;
}

/** The key values when `where` names exactly the primary columns with plain values (no operator, no transformer), else undefined. */
function pkValues(meta: EntityMetadata, where: Record<string, unknown>): unknown[] | undefined {
  const columns = meta.primaryColumns;
  const values: unknown[] = [];
  let n = 0;
  for (const key in where) {
    const column = columns.find((c) => c.propertyName === key);
    if (!column || column.embeddedMetadata || column.transformer || column.relationMetadata) return undefined;
    const value = where[key];
    const type = typeof value;
    if (type !== 'number' && type !== 'string' && type !== 'bigint') return undefined;
    values[columns.indexOf(column)] = value;
    n++;
  }
  return n === columns.length && meta.eagerRelations.length === 0 ? values : undefined;
}
