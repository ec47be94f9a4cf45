import type { DataSource, EntityMetadata } from 'typeorm';
import { ambientTx } from '../../context/store';
import { LockConfigError, LockNotAvailableError, LockTimeoutError, StaleEntityError, TransactionRequiredError } from '../../errors';
import { resolveRowLockSpec, type RowLockOptions } from '../../locks/row-lock-options';
import { lockMetadataOf } from '../../metadata/registry';
import { settings } from '../../settings';
import { installationForEntity, requireInstallation, type Installation } from './installations';
import { markLocked } from './patch-query-builder';

export interface LockCallOptions extends RowLockOptions {
  /** The DataSource of the entity when several are installed (found from the entity's class otherwise). */
  dataSource?: DataSource;
}

/** Resolves which installation and metadata an entity instance belongs to, or says clearly why not. */
export function entityTarget(entity: unknown, caller: string, dataSource?: DataSource): { inst: Installation; meta: EntityMetadata } {
  if (entity === null || typeof entity !== 'object') {
    throw new LockConfigError(`${caller}: expected an entity instance, got ${entity === null ? 'null' : typeof entity}`);
  }
  const cls = (entity as object).constructor;
  const inst = dataSource ? requireInstallation(dataSource) : installationForEntity(cls) ?? requireInstallation();
  if (!inst.dataSource.hasMetadata(cls)) {
    throw new LockConfigError(
      `${caller}: ${cls?.name ?? 'object'} is not an entity of this DataSource (create it with repository.create() or load it).`,
      { entity: cls?.name },
    );
  }
  return { inst, meta: inst.dataSource.getMetadata(cls) };
}

/**
 * Rails' `lock!`: inside the ambient transaction, re-reads the entity's row with the lock
 * clause (one `SELECT … FOR UPDATE`) and refreshes the entity's columns in place.
 */
export async function lockEntity<T extends object>(entity: T, options: LockCallOptions = {}): Promise<T> {
  const { inst, meta } = entityTarget(entity, 'lock()', options.dataSource);
  const ds = inst.dataSource;
  const tx = ambientTx(ds);
  if (!tx) {
    throw new TransactionRequiredError(
      `lock(${meta.name}) needs a transaction: a row lock ends with its transaction. Use withLock(entity, fn), transaction(fn) or @Transactional().`,
      { entity: meta.name },
    );
  }
  const id = meta.getEntityIdMap(entity);
  if (!id || meta.primaryColumns.some((c) => c.getEntityValue(entity) === undefined || c.getEntityValue(entity) === null)) {
    throw new LockConfigError(`lock(${meta.name}): the entity has no primary-key value; save or load it before locking.`, { entity: meta.name });
  }
  const { dataSource: _ds, ...callOptions } = options;
  const { spec, problems } = resolveRowLockSpec(
    { timeoutMs: settings.defaultLockTimeoutMs },
    lockMetadataOf(meta.target as Function)?.pessimistic,
    callOptions,
  );
  if (problems.length) throw new LockConfigError(`lock(${meta.name}): ${problems.join('; ')}`, { entity: meta.name });
  inst.dialect.checkRowLock(spec, meta.name);

  const qb = tx.manager.createQueryBuilder(meta.target, meta.tableName.replace(/\W/g, '_')).whereInIds(id);
  markLocked(qb, spec);
  let fresh: T | null;
  try {
    fresh = (await qb.getOne()) as T | null;
  } catch (error) {
    throw await withBlockers(error, inst, meta, entity);
  }
  if (!fresh) {
    if (spec.onLocked === 'skip_locked') {
      throw new LockNotAvailableError(`lock(${meta.name} ${JSON.stringify(id)}): the row is locked (skip_locked)`, { entity: meta.name, id });
    }
    throw new StaleEntityError(`lock(${meta.name} ${JSON.stringify(id)}): the row no longer exists`, { entity: meta.name, id });
  }
  for (const column of meta.columns) {
    if (column.isVirtual) continue;
    column.setEntityValue(entity, column.getEntityValue(fresh));
  }
  return entity;
}

/** On PostgreSQL a lock timeout names the backend holding the row: pid and query. */
async function withBlockers(error: unknown, inst: Installation, meta: EntityMetadata, entity: object): Promise<unknown> {
  if (!(error instanceof LockTimeoutError) || !inst.dialect.describeRowLockHolder) return error;
  const where: Record<string, unknown> = {};
  for (const c of meta.primaryColumns) where[c.databaseName] = c.getEntityValue(entity);
  const blockers = await inst.dialect.describeRowLockHolder(inst.dataSource, meta.tablePath, where);
  if (!blockers.length) return error;
  const who = blockers.map((b) => `pid ${b.pid} (${(b.query ?? '').slice(0, 200)})`).join(', ');
  return new LockTimeoutError(`${error.message}; held by ${who}`, { ...error.details, id: meta.getEntityIdMap(entity), blockers });
}
