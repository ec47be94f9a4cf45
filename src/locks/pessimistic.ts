import { lockLostError, runLockedBody, type LockedBody } from '../context/lock-scope';
import { ambientTx } from '../context/store';
import { onNamedConnection, transaction, transactionOn, type TransactionOptions } from '../context/transaction';
import { badOption, badOptions } from '../faults/options';
import type { LockLostError } from '../errors';
import { resolveInstallation, type Installation } from '../installations';
import { checkFunction, checkOptions } from '../arguments';
import type { EntityDescriptor, PortConnection } from '../orm/port';
import { entityTarget, LOCK_CALL_OPTIONS, lockCallProblems, lockEntity, lockResolved, shownId, type LockCallOptions } from './row-lock';
import { resolveRowLockSpec, type RowLockOptions } from './row-lock-options';

export type { RowLockOptions, RowLockMode, OnLocked } from './row-lock-options';

/**
 * Rails' `lock!`. Inside a transaction: re-reads `entity`'s row with the lock clause and
 * refreshes its fields in place; returns the same object. Outside one: TransactionRequiredError.
 *
 * ```ts
 * await transaction(async () => {
 *   await lock(user);            // SELECT … FOR UPDATE
 *   user.credits -= order.price;
 *   await dataSource.manager.save(user);
 * });
 * ```
 */
export function lock<T extends object>(entity: T, options?: LockCallOptions): Promise<T> {
  return lockEntity(entity, options);
}

/**
 * Rails' `with_lock`: joins or opens a transaction, locks and reloads `entity`, runs `fn`
 * with it, commits.
 *
 * ```ts
 * await withLock(user, async (u) => { u.credits -= 10; await repo.save(u); });
 * ```
 */
export async function withLock<T extends object, R>(
  entity: T,
  fn: (locked: T) => Promise<R> | R,
  options: LockCallOptions & Pick<TransactionOptions, 'isolation'> = {},
): Promise<R> {
  checkFunction('withLock(entity, fn, options?)', fn, 'fn');
  const problems = lockCallProblems(options, WITH_LOCK_OPTIONS);
  if (problems.length) throw badOptions('withLock()', problems);
  // the entity's own installation: it is where its row lives
  const { inst, desc } = entityTarget(entity, 'withLock()', options.dataSource);
  const lockOptions = rowLockOptionsOf(options);
  const body = () =>
    transaction(
      async () => {
        const connection = ambientTx(inst)!.connection;
        const locked = await lockResolved(inst, desc, connection, entity, lockOptions);
        return runLockedBody(rowLockBody(inst, desc, connection, entity), () => fn(locked));
      },
      options.isolation === undefined ? { dataSource: inst.port.target } : { isolation: options.isolation, dataSource: inst.port.target },
    );
  return options.dataSource === undefined ? body() : onNamedConnection(inst, options.dataSource, 'withLock()', body);
}

const WITH_LOCK_OPTIONS = [...LOCK_CALL_OPTIONS, 'isolation'];

/** The row-lock options of a call's options (without dataSource and isolation). */
function rowLockOptionsOf(options: LockCallOptions & Pick<TransactionOptions, 'isolation'>): RowLockOptions {
  const { mode, onLocked, timeoutMs } = options;
  return mode === undefined && onLocked === undefined && timeoutMs === undefined ? NO_OPTIONS : { mode, onLocked, timeoutMs };
}
const NO_OPTIONS: RowLockOptions = Object.freeze({});

/** The lock scope of a body holding `entity`'s row lock on `connection` (its signal, its LockLostError). */
function rowLockBody(inst: Installation, desc: EntityDescriptor, connection: PortConnection, entity: object): LockedBody {
  return {
    inst,
    connection,
    lost: (cause) => {
      const shown = shownId(inst.port.idOf(desc, entity));
      return lockLostError('withLock()', `the row lock on ${desc.name} ${JSON.stringify(shown)}`, { entity: desc.name, id: shown, cause });
    },
  };
}

/** The options of `@Pessimistic()` on a method and of `withPessimistic()`. */
export const PESSIMISTIC_METHOD_OPTIONS = ['mode', 'onLocked', 'timeoutMs', 'entities', 'dataSource'];

export interface PessimisticMethodOptions extends RowLockOptions {
  /** Lock only reads of these entity classes (default: every entity read). */
  entities?: Function[];
  /** DataSource (or MikroORM instance), when several are installed. */
  dataSource?: unknown;
}

/**
 * The plain-function twin of `@Pessimistic()` on a method: runs `fn` in a transaction in
 * which every entity read through TypeORM is issued with the lock clause.
 *
 * ```ts
 * await withPessimistic(async () => {
 *   const user = await users.findOneByOrFail({ id });   // … FOR UPDATE
 * }, { onLocked: 'nowait' });
 * ```
 */
export async function withPessimistic<R>(fn: () => Promise<R> | R, options: PessimisticMethodOptions = {}, source = 'withPessimistic()'): Promise<R> {
  checkFunction(source, fn, 'fn', { method: source });
  const parts = partsOf(options, source);
  const { entities, dataSource, lockOptions } = parts;
  const inst = resolveInstallation(source, dataSource === undefined ? undefined : { explicit: dataSource });
  const lost = lostOf(parts, source);
  const run = () =>
    transactionOn(inst, async () => {
      const scope = { live: true };
      try {
        const connection = ambientTx(inst)!.connection;
        return await runLockedBody({ inst, connection, lost }, () => fn(), { readLock: { options: lockOptions, entities, source, inst, scope } });
      } finally {
        scope.live = false;
      }
    });
  return dataSource === undefined ? run() : onNamedConnection(inst, dataSource, source, run);
}

/** The options of a call split into the policy's parts: the same objects while the options stay the same. */
interface PessimisticParts {
  entities?: Function[];
  dataSource?: unknown;
  lockOptions: RowLockOptions;
  /** The scope's LockLostError, per source (made once). */
  lost?: { source: string; fn: (cause: unknown) => LockLostError };
}

/** Checks `options` (once per options object, again when it changed) and splits them. */
function partsOf(options: PessimisticMethodOptions, source: string): PessimisticParts {
  const seen = options !== null && typeof options === 'object' ? validOptions.get(options) : undefined;
  if (seen && sameAsSeen(options, seen.snapshot)) return seen.parts;
  checkPessimisticOptions(options, source);
  const { entities, dataSource, ...lockOptions } = options;
  const parts: PessimisticParts = { entities, dataSource, lockOptions };
  if (options !== null && typeof options === 'object') validOptions.set(options, { snapshot: snapshot(options), parts });
  return parts;
}

function lostOf(parts: PessimisticParts, source: string): (cause: unknown) => LockLostError {
  if (parts.lost?.source === source) return parts.lost.fn;
  const fn = (cause: unknown) => lockLostError(source, 'its row locks', { method: source, cause });
  parts.lost = { source, fn };
  return fn;
}

/** Throws LockConfigError (naming `source`) unless `options` are valid options of withPessimistic / @Pessimistic. */
function checkPessimisticOptions(options: PessimisticMethodOptions, source: string): void {
  checkOptions(source, options, PESSIMISTIC_METHOD_OPTIONS, { method: source });
  const { entities, dataSource: _ds, ...lockOptions } = options;
  const { problems } = resolveRowLockSpec(lockOptions);
  if (problems.length) throw badOptions(source, problems, { method: source });
  if (entities !== undefined && (!Array.isArray(entities) || entities.some((e) => typeof e !== 'function'))) {
    throw badOption(source, 'entities', 'an array of entity classes', entities, { method: source });
  }
}

/**
 * Options objects found valid, with what they held then and their parts: a decorator passes the
 * same object on every call, which is checked and split once (again only when it changed since).
 */
const validOptions = new WeakMap<object, { snapshot: readonly unknown[]; parts: PessimisticParts }>();

function snapshot(options: PessimisticMethodOptions): unknown[] {
  let keys = 0;
  for (const _ in options) keys++;
  const entities = options.entities;
  return [keys, options.mode, options.onLocked, options.timeoutMs, options.dataSource, entities, entities?.length, ...(entities ?? [])];
}

function sameAsSeen(options: PessimisticMethodOptions, seen: readonly unknown[]): boolean {
  const now = snapshot(options);
  return now.length === seen.length && now.every((v, i) => v === seen[i]);
}
