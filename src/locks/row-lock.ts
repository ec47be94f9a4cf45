import { noteLock, settingOf } from '../context/connection-model';
import { ambientTx } from '../context/store';
import { namedConnection, onNamedConnection } from '../context/transaction';
import { describeValue, optionsProblems } from '../arguments';
import { LockConfigError, LockError, LockNotAvailableError, LockTimeoutError, StaleEntityError, TransactionRequiredError } from '../errors';
import { lockMetadataOf } from '../metadata/registry';
import { resolveInstallation, type Installation } from '../orm/installations';
import type { EntityDescriptor, PortConnection } from '../orm/port';
import { resolveRowLockSpec, type RowLockOptions, type RowLockSpec } from './row-lock-options';

/**
 * Row locks (the strategy): `lock()` and the locked reads of `lockParent` and `@Pessimistic`
 * methods. The ORM builds the SELECT through the port; the dialect writes the lock clause,
 * bounds the wait and converts the driver's errors.
 */
export interface LockCallOptions extends RowLockOptions {
  /** The DataSource (or MikroORM instance) of the entity when several are installed and the entity does not say. */
  dataSource?: unknown;
}

/** Problems with row-lock call options (empty when fine). */
export function lockCallProblems(options: unknown, known: readonly string[] = LOCK_CALL_OPTIONS): string[] {
  const shape = optionsProblems(options, known);
  if (options === undefined || shape.length) return shape;
  return resolveRowLockSpec(options as RowLockOptions).problems;
}

/** The options of `lock()`; `withLock()` adds `isolation`. */
export const LOCK_CALL_OPTIONS = ['mode', 'onLocked', 'timeoutMs', 'dataSource'];

/** The installation and descriptor of an entity object, or a LockConfigError saying why not. */
export function entityTarget(entity: unknown, caller: string, dataSource?: unknown): { inst: Installation; desc: EntityDescriptor } {
  if (entity === null || typeof entity !== 'object' || Array.isArray(entity)) {
    throw new LockConfigError(`${caller}: expected an entity instance, got ${describeValue(entity)}`);
  }
  const proto: unknown = Object.getPrototypeOf(entity);
  const plain = proto === Object.prototype || proto === null;
  try {
    const inst = resolveInstallation(caller, { explicit: dataSource, entity });
    return { inst, desc: inst.entityOf(entity as object, caller) };
  } catch (error) {
    // a plain object is an entity only when TypeORM loaded it for an EntitySchema without a target
    if (!plain || !(error instanceof LockConfigError)) throw error;
    throw new LockConfigError(
      `${caller}: a plain object is not an entity of any ORM instance (it is no instance of an entity class); make it with repository.create({ … }) or new Entity(), or load it with find*(). ${error.message}`,
    );
  }
}

/** The spec a row lock of `entity` uses: installed default < the class's @Pessimistic < the call's options. */
export function rowLockSpecFor(inst: Pick<Installation, 'settings'>, entity: EntityDescriptor, options: RowLockOptions, subject: string): RowLockSpec {
  const { mode, onLocked, timeoutMs } = options;
  const { spec, problems } = resolveRowLockSpec({ timeoutMs: inst.settings.lockTimeoutMs }, lockMetadataOf(entity.target)?.pessimistic, { mode, onLocked, timeoutMs });
  if (problems.length) throw new LockConfigError(`${subject}: ${problems.join('; ')}`, { entity: entity.name });
  return spec;
}

/**
 * Rails' `lock!`: inside the ambient transaction, re-reads the entity's row with the lock
 * clause (one `SELECT … FOR UPDATE`) and refreshes the entity's columns in place.
 */
export async function lockEntity<T extends object>(entity: T, options: LockCallOptions = {}): Promise<T> {
  const problems = lockCallProblems(options);
  if (problems.length) throw new LockConfigError(`lock(): ${problems.join('; ')}`);
  const { inst, desc } = entityTarget(entity, 'lock()', options.dataSource);
  const named = namedConnection(inst, options.dataSource, 'lock()');
  if (named && named !== ambientTx(inst)?.connection) {
    // a QueryRunner (or its manager) named: lock on it, inside the transaction its owner opened
    return onNamedConnection(inst, named, 'lock()', () => lockEntity(entity, { ...options, dataSource: inst.port.target }));
  }
  const tx = ambientTx(inst);
  if (!tx) {
    throw new TransactionRequiredError(
      `lock(${desc.name}) needs a transaction on ${inst.label}: a row lock ends with its transaction. Use withLock(entity, fn), transaction(fn) or @Transactional().`,
      { entity: desc.name },
    );
  }
  const where = inst.port.idOf(desc, entity);
  if (Object.values(where).some((v) => v === undefined || v === null)) {
    throw new LockConfigError(`lock(${desc.name}): the entity has no primary-key value; save or load it before locking.`, { entity: desc.name });
  }
  const { dataSource: _ds, ...callOptions } = options;
  const subject = `lock(${desc.name} ${JSON.stringify(Object.keys(where).length === 1 ? Object.values(where)[0] : where)})`;
  const fresh = await lockRowOn(inst, tx.connection, desc, where, callOptions, subject, 'row');
  if (!fresh) throw new StaleEntityError(`${subject}: the row no longer exists`, { entity: desc.name, id: where });
  inst.port.refresh(desc, entity, fresh);
  return entity;
}

/**
 * Locks one row of `entity` on `connection` (inside its open transaction) and returns it freshly
 * read, or null when no row matches. Used by `lock()` (the ambient transaction's connection) and
 * by `lockParent` (the INSERT's own connection).
 */
export async function lockRowOn(
  inst: Installation,
  connection: PortConnection,
  entity: EntityDescriptor,
  where: Record<string, unknown>,
  options: RowLockOptions,
  subject: string,
  kind: 'row' | 'parent',
): Promise<object | null> {
  const spec = rowLockSpecFor(inst, entity, options, subject);
  inst.dialect.checkRowLock(spec, subject);
  if (!connection.isTransactionActive) {
    throw new TransactionRequiredError(`${subject}: locking ${entity.name} needs a transaction (the lock is released at commit).`, { entity: entity.name });
  }
  const fresh = await runLockedRead(inst, connection, entity, spec, kind, () => inst.port.lockedRead(connection, entity, where, spec), where);
  if (!fresh && spec.onLocked === 'skip_locked') {
    throw new LockNotAvailableError(`${subject}: the row is locked (skip_locked)`, { entity: entity.name, id: where });
  }
  return fresh;
}

/**
 * Runs one locking read (`work`) on `connection`: bounds its wait as the spec says, converts
 * lock errors (naming the holder on PostgreSQL when `where` is known), and reports the events.
 */
export async function runLockedRead<T>(
  inst: Installation,
  connection: PortConnection,
  entity: EntityDescriptor,
  spec: RowLockSpec,
  kind: 'row' | 'parent',
  work: () => Promise<T>,
  where?: Record<string, unknown>,
): Promise<T> {
  const startedAt = Date.now();
  // a limit may stay set for the rest of the transaction (one statement saved); the connection model
  // remembers it, and every later ormlock lock without a limit puts the original back first
  const memo = connection.isTransactionActive ? settingOf(connection) : undefined;
  try {
    const result = await inst.dialect.withRowLockTimeout(connection, spec.timeoutMs, work, memo);
    inst.emit({ type: 'acquired', kind, target: entity.name, waitedMs: Date.now() - startedAt });
    noteLock(connection, { inst, kind, id: `${entity.name}:${JSON.stringify(where ?? {})}`, display: entity.name }, 'transaction', inst.dialect.capabilities.rollbackToSavepointReleasesRowLocks);
    return result;
  } catch (error) {
    const converted = inst.dialect.convertError(error, { entity: entity.name, onLocked: spec.onLocked, timeoutMs: spec.timeoutMs, startedAt, lockWait: true });
    if (converted instanceof LockTimeoutError || converted instanceof LockNotAvailableError) {
      inst.emit({ type: converted instanceof LockTimeoutError ? 'timeout' : 'not_available', kind, target: entity.name, waitedMs: Date.now() - startedAt });
    }
    if (converted && where) throw await withBlockers(converted, inst, entity, where);
    throw converted ?? error;
  }
}

/** On PostgreSQL a lock timeout names the backend holding the row: pid and query. */
async function withBlockers(error: LockError, inst: Installation, entity: EntityDescriptor, where: Record<string, unknown>): Promise<LockError> {
  if (!(error instanceof LockTimeoutError) || !inst.dialect.describeRowLockHolder || !inst.port.columnsOf) return error;
  const blockers = await inst.dialect.describeRowLockHolder(inst.port.serverAddress(), entity.table, inst.port.columnsOf(entity, where)).catch(() => []);
  if (!blockers.length) return error;
  const who = blockers.map((b) => `pid ${b.pid} (${(b.query ?? '').slice(0, 200)})`).join(', ');
  return new LockTimeoutError(`${error.message}; held by ${who}`, { ...error.details, id: error.details.id ?? where, blockers });
}

/** The refusal of a read a `@Pessimistic` method covers but no row lock can make exact. */
export function unlockableRead(source: string, call: string, entity: string, why: string): LockConfigError {
  return new LockConfigError(
    `${source}: ${call} on ${entity} cannot be locked (${why}). Read the rows with find()/getMany() (they are locked), ` +
      'or serialize the whole check with lock(parent) or withAdvisoryLock(key).',
    { entity, method: source, call },
  );
}
