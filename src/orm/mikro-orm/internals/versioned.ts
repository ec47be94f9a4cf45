import { AsyncLocalStorage } from 'node:async_hooks';
import type { StaleEntityError } from '../../../errors';
import { staleFlush } from '../../../faults/version-checks';
import { lockMetadataOf } from '../../../metadata/registry';
import { installationFor } from '../registry';
import { expectMethod, ownerOf, replaceMethod, type MikroPatch } from './patch';

/**
 * `@Versioned` on MikroORM: every flush writes a versioned row only if its version is unchanged.
 *
 * A single-row UPDATE already has the version in its WHERE and MikroORM checks the affected rows
 * (`checkOptimisticLock`); ormlock turns its OptimisticLockError into StaleEntityError. A **batched**
 * UPDATE (2+ changed entities of one type in one flush) is where MikroORM checks versions with a
 * separate SELECT (`checkOptimisticLocks`) and then updates by primary key only: a check-then-act
 * window (mikro-orm #1703). For @Versioned entities ormlock drops that SELECT and puts the version
 * into the batched UPDATE's WHERE instead (`(id, version) IN ((?, ?), …)`), then requires one
 * affected row per entity: otherwise StaleEntityError, and the flush's transaction rolls back, so
 * nothing is written. No extra statement: the check is in the UPDATE. Removals are the same: the
 * batched DELETE (`WHERE id IN (…)`) becomes `WHERE (id = ? AND version = ?) OR …`, affected rows checked.
 */
interface BatchState {
  readonly meta: any;
  readonly changeSets: any[];
}

const batch = new AsyncLocalStorage<BatchState>();
const removal = new AsyncLocalStorage<BatchState>();

function isVersioned(meta: any): boolean {
  return typeof meta?.class === 'function' && meta.versionProperty !== undefined && lockMetadataOf(meta.class)?.versioned !== undefined;
}

export function versionedPatches(persister: object, driver: object): MikroPatch[] {
  const pLabel = 'ChangeSetPersister.prototype';
  const dLabel = 'AbstractSqlDriver.prototype';
  const pOwner = ownerOf(persister, 'persistManagedEntitiesBatch');
  const dOwner = ownerOf(driver, 'nativeUpdateMany', ['concurrencyCheckKeys']);
  return [
    {
      name: `${pLabel}.persistManagedEntitiesBatch / checkOptimisticLocks / checkOptimisticLock, ${dLabel}.nativeUpdateMany (the @Versioned check)`,
      probe: () => [
        ...expectMethod(pOwner, pLabel, 'persistManagedEntitiesBatch', ['checkOptimisticLocks', 'nativeUpdateMany']),
        ...expectMethod(ownerOf(persister, 'checkOptimisticLocks'), pLabel, 'checkOptimisticLocks', ['versionProperty']),
        ...expectMethod(ownerOf(persister, 'checkOptimisticLock'), pLabel, 'checkOptimisticLock', ['affectedRows']),
        ...expectMethod(dOwner, dLabel, 'nativeUpdateMany', ['concurrencyCheckKeys', 'upsert']),
        ...expectMethod(ownerOf(persister, 'executeDeletes'), pLabel, 'executeDeletes', ['nativeDelete', '$in', 'withSchema']),
        ...expectMethod(ownerOf(driver, 'nativeDelete'), dLabel, 'nativeDelete'),
      ],
      apply() {
        const undo = [
          replaceMethod(
            pOwner!,
            'persistManagedEntitiesBatch',
            (base) =>
              function (this: any, meta: any, changeSets: any[], ...rest: unknown[]) {
                if (!isVersioned(meta) || !installationFor(this)) return base.call(this, meta, changeSets, ...rest);
                return batch.run({ meta, changeSets }, () => base.call(this, meta, changeSets, ...rest));
              },
          ),
          replaceMethod(
            ownerOf(persister, 'checkOptimisticLocks')!,
            'checkOptimisticLocks',
            (base) =>
              function (this: any, meta: any, ...rest: unknown[]) {
                // the version goes into the batched UPDATE's WHERE instead of a separate SELECT
                if (batch.getStore()?.meta === meta) return Promise.resolve();
                return base.call(this, meta, ...rest);
              },
          ),
          replaceMethod(
            ownerOf(persister, 'checkOptimisticLock')!,
            'checkOptimisticLock',
            (base) =>
              function (this: any, meta: any, changeSet: any, res: any) {
                try {
                  return base.call(this, meta, changeSet, res);
                } catch (error) {
                  if (isVersioned(meta) && installationFor(this)) throw staleError(meta, [changeSet], 1, 0);
                  throw error;
                }
              },
          ),
          replaceMethod(
            dOwner!,
            'nativeUpdateMany',
            (base) =>
              async function (this: any, entityName: string, where: any[], data: any[], options: any = {}) {
                const state = batch.getStore();
                const meta = state && this.metadata.find(entityName);
                if (!state || options.upsert || !meta || meta.className !== state.meta.className || where.length !== state.changeSets.length) {
                  return base.call(this, entityName, where, data, options);
                }
                const vp: string = meta.versionProperty;
                const prop = meta.properties[vp];
                const conds = where.map((cond, i) => {
                  const object = cond !== null && typeof cond === 'object' && !Array.isArray(cond) ? cond : { [meta.primaryKeys[0]]: cond };
                  return { ...object, [vp]: this.platform.quoteVersionValue(state.changeSets[i].entity[vp], prop) };
                });
                // the WHERE is `(primary keys, concurrency keys) IN (…)`, built before the first await:
                // the version is one of those keys for exactly this statement
                const keys: Set<string> = meta.concurrencyCheckKeys;
                const added = !keys.has(vp);
                if (added) keys.add(vp);
                let pending: Promise<any>;
                try {
                  pending = base.call(this, entityName, conds, data, options);
                } finally {
                  if (added) keys.delete(vp);
                }
                const res = await pending;
                const affected = res?.affectedRows;
                if (typeof affected === 'number' && affected < conds.length) throw staleError(meta, state.changeSets, conds.length, affected);
                return res;
              },
          ),
          replaceMethod(
            ownerOf(persister, 'executeDeletes')!,
            'executeDeletes',
            (base) =>
              function (this: any, changeSets: any[], options: unknown, withSchema?: boolean) {
                const meta = changeSets?.[0]?.meta;
                if (!withSchema || !isVersioned(meta) || meta.primaryKeys.length !== 1 || !installationFor(this))
                  return base.call(this, changeSets, options, withSchema);
                return removal.run({ meta, changeSets }, () => base.call(this, changeSets, options, withSchema));
              },
          ),
          replaceMethod(
            ownerOf(driver, 'nativeDelete')!,
            'nativeDelete',
            (base) =>
              async function (this: any, entityName: string, where: any, options: any = {}) {
                const state = removal.getStore();
                const meta = state?.meta;
                const pk: string | undefined = meta?.primaryKeys[0];
                const pks: unknown[] | undefined = pk !== undefined ? where?.[pk]?.$in : undefined;
                if (!state || !Array.isArray(pks) || entityName !== meta.root.className || Object.keys(where).length !== 1)
                  return base.call(this, entityName, where, options);
                const vp: string = meta.versionProperty;
                const byId = new Map(state.changeSets.map((cs) => [String(cs.getPrimaryKey()), cs]));
                const chunk = pks.map((id) => byId.get(String(id)));
                if (chunk.some((cs) => !cs)) return base.call(this, entityName, where, options);
                const checked = {
                  $or: chunk.map((cs) => ({ [pk!]: cs.getPrimaryKey(), [vp]: this.platform.quoteVersionValue(cs.entity[vp], meta.properties[vp]) })),
                };
                const res = await base.call(this, entityName, checked, options);
                const affected = res?.affectedRows;
                if (typeof affected === 'number' && affected < chunk.length) throw staleError(meta, chunk, chunk.length, affected, 'remove');
                return res;
              },
          ),
        ];
        return () => undo.reverse().forEach((u) => u());
      },
    },
  ];
}

function staleError(meta: any, changeSets: any[], expected: number, affected: number, write: 'update' | 'remove' = 'update'): StaleEntityError {
  const vp = meta.versionProperty;
  const ids = changeSets.map((cs) => cs.getPrimaryKey?.() ?? cs.entity?.[meta.primaryKeys[0]]);
  const first = changeSets[0];
  const many = changeSets.length > 1;
  return staleFlush(meta.className, ids, expected, affected, vp, write === 'remove' ? 'DELETE' : 'UPDATE', {
    entity: meta.className,
    id: many ? ids : ids[0],
    expectedVersion: first?.entity?.[vp],
  });
}
