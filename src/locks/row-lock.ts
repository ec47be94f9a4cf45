import { noteLock } from '../context/connection-model';
import { ambientTx } from '../context/store';
import { namedConnection, onNamedConnection } from '../context/transaction';
import { optionsProblems } from '../arguments';
import { LockConfigError, LockNotAvailableError, LockTimeoutError, type LockError } from '../errors';
import { badOption, badOptions } from '../faults/options';
import { noPrimaryKeyValue, plainObjectNotAnEntity, rowGone, rowLockedSkipped, rowLockTimeoutHeldBy, rowLockWithoutTransaction } from '../faults/row-locks';
import { lockMetadataOf } from '../metadata/registry';
import { resolveInstallation, type Installation } from '../installations';
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
  if (options === undefined || isEmptyPlainObject(options)) return NO_PROBLEMS;
  const shape = optionsProblems(options, known);
  if (options === undefined || shape.length) return shape;
  return resolveRowLockSpec(options as RowLockOptions).problems;
}

const NO_PROBLEMS: string[] = [];

/** `{}` (the default options object): nothing to check. */
function isEmptyPlainObject(x: unknown): boolean {
  if (x === null || typeof x !== 'object' || Object.getPrototypeOf(x) !== Object.prototype) return false;
  for (const _ in x) return false;
  return true;
}

/** The options of `lock()`; `withLock()` adds `isolation`. */
export const LOCK_CALL_OPTIONS = ['mode', 'onLocked', 'timeoutMs', 'dataSource'];

/** The installation and descriptor of an entity object, or a LockConfigError saying why not. */
export function entityTarget(entity: unknown, caller: string, dataSource?: unknown): { inst: Installation; desc: EntityDescriptor } {
  if (entity === null || typeof entity !== 'object' || Array.isArray(entity)) {
    throw badOption(caller, 'the entity', 'an entity instance', entity);
  }
  const proto: unknown = Object.getPrototypeOf(entity);
  const plain = proto === Object.prototype || proto === null;
  try {
    const inst = resolveInstallation(caller, { explicit: dataSource, entity });
    return { inst, desc: inst.entityOf(entity as object, caller) };
  } catch (error) {
    // a plain object is an entity only when TypeORM loaded it for an EntitySchema without a target
    if (!plain || !(error instanceof LockConfigError)) throw error;
    throw plainObjectNotAnEntity(caller, error);
  }
}

/** The spec a row lock of `entity` uses: installed default < the class's @Pessimistic < the call's options. */
export function rowLockSpecFor(
  inst: Pick<Installation, 'settings'>,
  entity: EntityDescriptor,
  options: RowLockOptions,
  subject: string | (() => string),
): RowLockSpec {
  const { mode, onLocked, timeoutMs } = options;
  const declared = lockMetadataOf(entity.target)?.pessimistic;
  const plain = mode === undefined && onLocked === undefined && timeoutMs === undefined;
  const installed = inst.settings.lockTimeoutMs;
  if (plain) {
    // the same spec for every call without options: cached per entity, as long as the layers below stay the same
    const cached = defaultSpecs.get(entity);
    if (cached && cached.declared === declared && cached.installed === installed) return cached.spec;
  }
  const { spec, problems } = resolveRowLockSpec({ timeoutMs: installed }, declared, { mode, onLocked, timeoutMs });
  if (problems.length) throw badOptions(typeof subject === 'function' ? subject() : subject, problems, { entity: entity.name });
  if (plain) defaultSpecs.set(entity, { declared, installed, spec });
  return spec;
}

/** Per entity: the spec of a call without options, and the layers it was made of. */
const defaultSpecs = new WeakMap<EntityDescriptor, { declared: unknown; installed: number | undefined; spec: RowLockSpec }>();

/** A one-key id as people write it (`7`), several as an object. */
export function shownId(where: Record<string, unknown>): unknown {
  let only: unknown;
  let n = 0;
  for (const key in where) {
    only = where[key];
    if (++n > 1) return where;
  }
  return n === 1 ? only : where;
}

/**
 * Rails' `lock!`: inside the ambient transaction, re-reads the entity's row with the lock
 * clause (one `SELECT … FOR UPDATE`) and refreshes the entity's columns in place.
 */
export async function lockEntity<T extends object>(entity: T, options: LockCallOptions = {}): Promise<T> {
  const problems = lockCallProblems(options);
  if (problems.length) throw badOptions('lock()', problems);
  const { inst, desc } = entityTarget(entity, 'lock()', options.dataSource);
  const tx = ambientTx(inst);
  const named = options.dataSource === undefined ? undefined : namedConnection(inst, options.dataSource, 'lock()');
  if (named && named !== tx?.connection) {
    // a QueryRunner (or its manager) named: lock on it, inside the transaction its owner opened
    return onNamedConnection(inst, named, 'lock()', () => lockEntity(entity, { ...options, dataSource: inst.port.target }));
  }
  if (!tx) {
    throw rowLockWithoutTransaction(`lock(${desc.name})`, desc.name, inst.label);
  }
  return lockResolved(inst, desc, tx.connection, entity, options.dataSource === undefined ? options : withoutDataSource(options));
}

/** `lock()` once its installation, entity and transaction are known (withLock comes here directly). */
export async function lockResolved<T extends object>(
  inst: Installation,
  desc: EntityDescriptor,
  connection: PortConnection,
  entity: T,
  options: RowLockOptions,
): Promise<T> {
  const where = inst.port.idOf(desc, entity);
  for (const key in where) {
    if (where[key] === undefined || where[key] === null) {
      throw noPrimaryKeyValue(`lock(${desc.name})`, desc.name);
    }
  }
  const subject = () => `lock(${desc.name} ${JSON.stringify(shownId(where))})`;
  const fresh = await lockRowOn(inst, connection, desc, where, options, subject, 'row');
  if (!fresh) throw rowGone(subject(), desc.name, where);
  inst.port.refresh(desc, entity, fresh);
  return entity;
}

function withoutDataSource(options: LockCallOptions): RowLockOptions {
  const { dataSource: _ds, ...rest } = options;
  return rest;
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
  subject: string | (() => string),
  kind: 'row' | 'parent',
): Promise<object | null> {
  const spec = rowLockSpecFor(inst, entity, options, subject);
  if (spec !== checkedSpecs.get(inst)) {
    inst.dialect.checkRowLock(spec, typeof subject === 'function' ? subject() : subject);
    checkedSpecs.set(inst, spec);
  }
  if (!connection.isTransactionActive) {
    throw rowLockWithoutTransaction(typeof subject === 'function' ? subject() : subject, entity.name, inst.label);
  }
  const bounded = spec.timeoutMs !== undefined && inst.port.boundsWait?.(entity, spec, where) === true;
  const fresh = await runLockedRead(inst, connection, entity, spec, kind, () => inst.port.lockedRead(connection, entity, where, spec), where, bounded);
  if (!fresh && spec.onLocked === 'skip_locked') {
    throw rowLockedSkipped(typeof subject === 'function' ? subject() : subject, entity.name, where);
  }
  return fresh;
}

/** Per installation: the last spec the dialect accepted (a checked spec object is not checked again). */
const checkedSpecs = new WeakMap<Installation, RowLockSpec>();

/**
 * Runs one locking read (`work`) on `connection`: bounds its wait as the spec says (unless `work`
 * bounds it itself: `bounded`), converts lock errors (naming the holder on PostgreSQL when `where`
 * is known), and reports the events.
 */
export async function runLockedRead<T>(
  inst: Installation,
  connection: PortConnection,
  entity: EntityDescriptor,
  spec: RowLockSpec,
  kind: 'row' | 'parent',
  work: () => Promise<T>,
  where?: Record<string, unknown>,
  bounded = false,
): Promise<T> {
  const startedAt = Date.now();
  try {
    // the limit lasts for this read only: the dialect restores it (or it rides in the statement)
    const result = await (bounded || spec.timeoutMs === undefined ? work() : inst.dialect.withRowLockTimeout(connection, spec.timeoutMs, work));
    inst.emit({ type: 'acquired', kind, target: entity.name, waitedMs: Date.now() - startedAt });
    noteLock(
      connection,
      { inst, kind, id: `${entity.name}:${where ? JSON.stringify(where) : '{}'}`, display: entity.name },
      'transaction',
      inst.dialect.capabilities.rollbackToSavepointReleasesRowLocks,
    );
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
  return rowLockTimeoutHeldBy(error, who, { ...error.details, id: error.details.id ?? where, blockers });
}

/** The refusal of a read a `@Pessimistic` method covers but no row lock can make exact (the adapters import it from here). */
export { unlockableRead } from '../faults/row-locks';
