import type { DataSource, EntityMetadata, QueryRunner } from 'typeorm';
import { ambientTx } from '../../context/store';
import { LockConfigError, LockNotAvailableError, LockTimeoutError, StaleEntityError, TransactionRequiredError } from '../../errors';
import { resolveRowLockSpec, type RowLockOptions, type RowLockSpec } from '../../locks/row-lock-options';
import { lockMetadataOf } from '../../metadata/registry';
import { settings } from '../../settings';
import { installationForEntity, installationOf, requireInstallation, type Installation } from './installations';
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
  const tx = ambientTx(inst.dataSource);
  if (!tx) {
    throw new TransactionRequiredError(
      `lock(${meta.name}) needs a transaction: a row lock ends with its transaction. Use withLock(entity, fn), transaction(fn) or @Transactional().`,
      { entity: meta.name },
    );
  }
  const where: Record<string, unknown> = {};
  for (const c of meta.primaryColumns) where[c.propertyPath] = c.getEntityValue(entity);
  if (Object.values(where).some((v) => v === undefined || v === null)) {
    throw new LockConfigError(`lock(${meta.name}): the entity has no primary-key value; save or load it before locking.`, { entity: meta.name });
  }
  const { dataSource: _ds, ...callOptions } = options;
  const subject = `lock(${meta.name} ${JSON.stringify(Object.keys(where).length === 1 ? Object.values(where)[0] : where)})`;
  const fresh = await lockRowOn<T>(tx.queryRunner, meta, where, callOptions, subject);
  if (!fresh) throw new StaleEntityError(`${subject}: the row no longer exists`, { entity: meta.name, id: meta.getEntityIdMap(entity) });
  refreshInPlace(meta, entity, fresh);
  return entity;
}

/** The spec a row lock of `meta` uses: installed default < the class's @Pessimistic < the call's options. */
export function rowLockSpecFor(meta: EntityMetadata, options: RowLockOptions, subject: string): RowLockSpec {
  const { mode, onLocked, timeoutMs } = options;
  const { spec, problems } = resolveRowLockSpec(
    { timeoutMs: settings.defaultLockTimeoutMs },
    typeof meta.target === 'function' ? lockMetadataOf(meta.target)?.pessimistic : undefined,
    { mode, onLocked, timeoutMs },
  );
  if (problems.length) throw new LockConfigError(`${subject}: ${problems.join('; ')}`, { entity: meta.name });
  return spec;
}

/**
 * Locks one row of `meta` with the lock clause on the given query runner and returns it freshly
 * read, or null when no row matches. `where` maps property paths to values. Used by `lock()`
 * (on the ambient transaction's runner) and by `lockParent` (on the INSERT's own runner).
 */
export async function lockRowOn<T = object>(
  queryRunner: QueryRunner,
  meta: EntityMetadata,
  where: Record<string, unknown>,
  options: RowLockOptions,
  subject: string,
): Promise<T | null> {
  const inst = installationOf(queryRunner.dataSource);
  if (!inst) {
    throw new LockConfigError(`${subject}: ormlock is not installed on this DataSource: call \`await installLocking(dataSource)\`.`, { entity: meta.name });
  }
  const spec = rowLockSpecFor(meta, options, subject);
  inst.dialect.checkRowLock(spec, subject);
  if (!queryRunner.isTransactionActive) {
    throw new TransactionRequiredError(`${subject}: locking ${meta.name} needs a transaction (the lock is released at commit).`, { entity: meta.name });
  }
  const alias = `ormlock_${meta.tableName.replace(/\W/g, '_')}`;
  const qb = queryRunner.manager.createQueryBuilder(meta.target, alias);
  Object.entries(where).forEach(([path, value], i) => {
    qb.andWhere(`${alias}.${path} = :ormlock_p${i}`, { [`ormlock_p${i}`]: value });
  });
  markLocked(qb, spec);
  let fresh: T | null;
  try {
    fresh = (await qb.getOne()) as T | null;
  } catch (error) {
    throw await withBlockers(error, inst, meta, where);
  }
  if (!fresh && spec.onLocked === 'skip_locked') {
    throw new LockNotAvailableError(`${subject}: the row is locked (skip_locked)`, { entity: meta.name, id: where });
  }
  return fresh;
}

/** Copies the freshly read columns into the user's object (Rails' reload). */
export function refreshInPlace(meta: EntityMetadata, target: object, fresh: object): void {
  for (const column of meta.columns) {
    if (column.isVirtual) continue;
    column.setEntityValue(target, column.getEntityValue(fresh));
  }
}

/** On PostgreSQL a lock timeout names the backend holding the row: pid and query. */
async function withBlockers(error: unknown, inst: Installation, meta: EntityMetadata, where: Record<string, unknown>): Promise<unknown> {
  if (!(error instanceof LockTimeoutError) || !inst.dialect.describeRowLockHolder) return error;
  const byColumn: Record<string, unknown> = {};
  for (const [path, value] of Object.entries(where)) {
    const column = meta.findColumnWithPropertyPath(path);
    if (column) byColumn[column.databaseName] = value;
  }
  const blockers = await inst.dialect.describeRowLockHolder(inst.dataSource, meta.tablePath, byColumn).catch(() => []);
  if (!blockers.length) return error;
  const who = blockers.map((b) => `pid ${b.pid} (${(b.query ?? '').slice(0, 200)})`).join(', ');
  return new LockTimeoutError(`${error.message}; held by ${who}`, { ...error.details, id: error.details.id ?? where, blockers });
}
