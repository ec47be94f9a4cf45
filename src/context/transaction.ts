import { checkFunction, optionsProblems } from '../arguments';
import { connectionLostError } from '../dialects/lost-connection';
import { LockLostError } from '../errors';
import { resolveInstallation, type Installation } from '../installations';
import type { IsolationLevel, OrmManager, PoolWait, PortConnection, PortTransaction } from '../orm/port';
import { NOTHING_TO_RUN, transactionCompleted } from './commit-hooks';
import { stateOf } from './connection-model';
import { runLockedBody, type LockedBody } from './lock-scope';
import type { LockScope } from './lock-signal';
import { propagate, PROPAGATIONS, type Propagation } from './propagation';
import { ambientTx, childFrame, currentFrame, liveTxs, pinnedConnection, runInFrame, type TxState } from './store';
import { runWithTurn } from './turns';
import { isolationInside, releasedQueryRunner } from '../faults/context';
import { badOptions } from '../faults/options';

export type { Propagation } from './propagation';
export type { IsolationLevel } from '../orm/port';

export interface TransactionOptions {
  /** `READ COMMITTED`, `REPEATABLE READ`, `SERIALIZABLE`, … (only when a transaction is opened). */
  isolation?: IsolationLevel;
  /**
   * `required` (default): join the ambient transaction or open one.
   * `requires_new`: always open a new one on a second connection (it commits on its own).
   * `nested`, `mandatory`, `never`, `supports`, `not_supported`: see src/context/propagation.ts.
   */
  propagation?: Propagation;
  /** Which installation (a DataSource, a MikroORM instance, or one of their managers), when several are installed. */
  dataSource?: unknown;
}

const TRANSACTION_OPTIONS = ['isolation', 'propagation', 'dataSource'];
const ISOLATIONS: readonly string[] = ['READ UNCOMMITTED', 'READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE'];
let nextTxId = 1;

/** Problems with transaction options (empty when fine). */
export function transactionOptionProblems(options: unknown): string[] {
  const shape = optionsProblems(options, TRANSACTION_OPTIONS);
  if (options === undefined || shape.length) return shape;
  const o = options as TransactionOptions;
  const problems: string[] = [];
  if (o.propagation !== undefined && !PROPAGATIONS.includes(o.propagation)) {
    problems.push(`propagation '${String(o.propagation)}' is not one of ${PROPAGATIONS.join(', ')}`);
  }
  if (o.isolation !== undefined && !ISOLATIONS.includes(o.isolation)) {
    problems.push(`isolation '${String(o.isolation)}' is not one of ${ISOLATIONS.join(', ')}`);
  }
  return problems;
}

/**
 * Runs `fn` in a transaction: joins the ambient one or opens one. Everything the ORM does
 * inside — `dataSource.manager`, repositories (also ones obtained earlier), query builders —
 * runs on that transaction's connection. A throw rolls back; lock-related driver errors
 * come out as ormlock errors (DeadlockError, SerializationError, …).
 */
export function transaction<T>(fn: () => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
  return runTransaction(fn, options, false);
}

/**
 * `transaction(fn, options)`. `checked`: the caller checked `fn` and the options' shape already
 * (`@Transactional`, once when the class is defined), so each call skips that. Never throws: every
 * failure is the returned promise's rejection.
 */
export function runTransaction<T>(fn: () => Promise<T> | T, options: TransactionOptions, checked: boolean): Promise<T> {
  try {
    if (!checked) {
      checkFunction('transaction(fn, options?)', fn, 'fn');
      const problems = transactionOptionProblems(options);
      if (problems.length) throw badOptions('transaction()', problems);
    }
    const propagation = options.propagation ?? 'required';
    const inst = resolveInstallation('transaction()', { explicit: options.dataSource });
    if (namedConnection(inst, options.dataSource, 'transaction()')) {
      return onNamedConnection(inst, options.dataSource, 'transaction()', () => transaction(fn, { ...options, dataSource: inst.port.target }));
    }
    // ---- propagation: the modes beyond required/requires_new (src/context/propagation.ts) ----
    if (propagation !== 'required' && propagation !== 'requires_new') {
      return propagate(inst, propagation, options.isolation, fn, () => transaction(fn, { ...options, propagation: 'required' }));
    }
    const joined = ambientTx(inst);
    if (joined && propagation === 'required') {
      if (options.isolation) requireIsolation(inst, joined, options.isolation, 'transaction()');
      return Promise.resolve(fn());
    }
    return openTransaction(inst, propagation === 'required', options.isolation, fn);
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * `transaction(fn, { dataSource: inst.port.target })` for a caller that resolved `inst` already
 * (no options to check, no named connection: an installation's own target names none): joins the
 * ambient transaction of `inst`, or opens one (on the pinned connection, if any).
 */
export function transactionOn<T>(inst: Installation, fn: () => Promise<T> | T): Promise<T> {
  // an installation no longer live: transaction()'s own path words the error
  if (!inst.port.isLive) return runTransaction(fn, { dataSource: inst.port.target }, true);
  try {
    if (ambientTx(inst)) return Promise.resolve(fn());
    return openTransaction(inst, true, undefined, fn);
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * `transaction()` once its options are checked and no ambient transaction is joined: opens one on
 * `inst` for `fn`. `onPinned`: inside a session-scoped lock, the transaction opens on the
 * connection that lock pinned (no second pool connection, and the lock's connection sees the
 * transaction's writes). Internal callers that know the installation (the advisory lock's
 * transaction-scoped call) start here.
 */
export function openTransaction<T>(inst: Installation, onPinned: boolean, isolation: IsolationLevel | undefined, fn: () => Promise<T> | T): Promise<T> {
  const pinned = onPinned ? pinnedConnection(inst) : undefined;
  // siblings landing on one pinned connection: one transaction at a time, in call order
  if (pinned) return runWithTurn(pinned, () => beginAndRun(inst, pinned, isolation, fn)) as Promise<T>;
  return beginAndRun(inst, undefined, isolation, fn);
}

/**
 * The lock a transaction opened for one locked body stands for (see `openLockedTransaction`).
 * `lostAs` is set once the body holds its lock: from then on a dead connection rejects the call
 * with the lock's error (not the transaction's, nor that of a scope inside it); before, with the
 * transaction's.
 */
export interface TransactionLock {
  lostAs?: (cause: unknown) => LockLostError;
}

/**
 * `openTransaction(inst, true, undefined, …)` for a lock that opens its transaction for itself (the
 * advisory lock's transaction-scoped call): the body runs as the transaction's own lock scope, which
 * `fn` gets, and which becomes the lock's scope once `lock.lostAs` is set — one scope (watcher,
 * frame, promise) per call instead of the lock's scope nested in the transaction's.
 */
export function openLockedTransaction<T>(inst: Installation, lock: TransactionLock, fn: (scope: LockScope) => Promise<T> | T): Promise<T> {
  const pinned = pinnedConnection(inst);
  if (pinned) return runWithTurn(pinned, () => beginAndRun(inst, pinned, undefined, fn, lock)) as Promise<T>;
  return beginAndRun(inst, undefined, undefined, fn, lock);
}

/** The lock scope of a transaction's body: the transaction's own, or the lock's it stands for (`lock`). */
function transactionBody(inst: Installation, connection: PortConnection, lock: TransactionLock | undefined): LockedBody {
  if (!lock) return { inst, connection, lost: lostFor(inst), adopt: true };
  return new LockTransactionBody(inst, connection, lock);
}

/** The lock scope of a transaction opened for one lock: a class (no closure, no accessor built per call). */
class LockTransactionBody implements LockedBody {
  constructor(
    readonly inst: Installation,
    readonly connection: PortConnection,
    private readonly lock: TransactionLock,
  ) {}

  lost(cause: unknown): LockLostError {
    return this.lock.lostAs ? this.lock.lostAs(cause) : transactionLost(this.inst, cause);
  }

  /** The lock's error once it is held, whatever a scope inside it names (as a lock scope nested in the transaction's did). */
  get adopt(): boolean {
    return this.lock.lostAs === undefined;
  }
}

/** Opens a transaction on `inst` (on `pinned` when given) and runs `fn` with it as the ambient transaction; commits, or rolls back on a throw; releases. */
async function beginAndRun<T>(
  inst: Installation,
  pinned: PortConnection | undefined,
  isolation: IsolationLevel | undefined,
  fn: (scope: LockScope) => Promise<T> | T,
  lock?: TransactionLock,
): Promise<T> {
  let unit: PortTransaction;
  try {
    unit = await beginBounded(inst, { isolation, connection: pinned }, 'transaction()');
  } catch (error) {
    throw inst.dialect.convertError(error) ?? error;
  }
  // one async function from BEGIN to release (no second one for running the body)
  const connection = unit.connection;
  const tx = newTxState(inst, connection, isolation);
  try {
    // called without arguments (the scope runLockedBody passes is not the body's business), unless it stands for a lock
    const body = lock
      ? inst.port.enter
        ? (scope: LockScope) => inst.port.enter!(connection, () => fn(scope))
        : fn
      : inst.port.enter
        ? () => inst.port.enter!(connection, fn as () => Promise<T> | T)
        : () => (fn as () => Promise<T> | T)();
    let result: T;
    try {
      // a lock scope too (lock() holds row locks until COMMIT): a dead connection rejects at once
      result = await runLockedBody(transactionBody(inst, connection, lock), body, { txs: txsWith(tx) });
    } finally {
      // the scope ends with the body: work it scheduled that runs during COMMIT runs as outside
      tx.scope.live = false;
    }
    await unit.commit();
    // ---- commit hooks: after the outermost COMMIT (src/context/commit-hooks.ts) ----
    const completed = transactionCompleted([connection], 'commit');
    if (completed !== NOTHING_TO_RUN) await completed; // nothing registered: no await either
    return result;
  } catch (error) {
    if (connection.isTransactionActive) await unit.rollback().catch(() => undefined);
    await transactionCompleted([connection], 'rollback');
    throw inst.dialect.convertError(error) ?? error;
  } finally {
    tx.scope.live = false;
    await unit.release();
  }
}

/** The isolation of the transaction `tx` runs in: as begun (the model knows it), else the server's default. */
export function runningIsolation(inst: Installation, tx: TxState): IsolationLevel {
  return stateOf(tx.connection).isolation ?? tx.isolation ?? inst.dialect.capabilities.defaultIsolation;
}

/**
 * A call asking for `wanted` inside the running transaction `tx` (whose level, asked for or the
 * server's default, cannot change any more): joins when it is that level, else LockConfigError
 * (the one wording of this fault).
 */
export function requireIsolation(inst: Installation, tx: TxState, wanted: IsolationLevel, caller: string): void {
  const running = runningIsolation(inst, tx);
  if (running === wanted) return;
  throw isolationInside(caller, wanted, running, inst.label);
}

/**
 * Opens a transaction on `inst` (on `connection` when given). When the caller's own scopes already
 * hold a connection of this installation, waiting for another is bounded by `connectionTimeoutMs`
 * (PoolExhaustedError), since every connection may be held by a caller waiting for one more.
 */
export function beginBounded(
  inst: Installation,
  options: { isolation?: IsolationLevel; connection?: PortConnection },
  caller: string,
): Promise<PortTransaction> {
  if (options.connection) return inst.port.begin(options);
  const wait = poolWait(inst, caller);
  return inst.port.begin(wait === NO_WAIT ? options : { ...options, ...wait });
}

/** No bound on the wait (the caller holds no connection). */
const NO_WAIT: PoolWait = Object.freeze({});

/** The bound on waiting for a pool connection, when the caller already holds one of `inst`. */
export function poolWait(inst: Installation, caller: string): PoolWait {
  const held = heldConnections(inst);
  return held > 0 ? { waitMs: inst.settings.connectionTimeoutMs, held, caller } : NO_WAIT;
}

/** How many connections of `inst` the current async context holds (open transactions and pinned connections). */
export function heldConnections(inst: Installation): number {
  const frame = currentFrame();
  if (!frame || (!frame.txs.size && !frame.pinned?.size)) return 0; // none held: no set to build
  const conns = new Set<PortConnection>();
  for (const tx of liveTxs(frame)) if (tx.inst === inst) conns.add(tx.connection);
  for (const [i, p] of frame?.pinned ?? []) if (i === inst && p.scope.live && !p.connection.isReleased) conns.add(p.connection);
  return conns.size;
}

/** Per installation, its `transactionLost` (one function, not one per transaction). */
const lostFns = new WeakMap<Installation, (cause: unknown) => LockLostError>();

function lostFor(inst: Installation): (cause: unknown) => LockLostError {
  let fn = lostFns.get(inst);
  if (!fn) lostFns.set(inst, (fn = (cause) => transactionLost(inst, cause)));
  return fn;
}

/** A transaction's connection died: the converter's LockLostError for the driver's reason. */
function transactionLost(inst: Installation, cause: unknown): LockLostError {
  const converted = inst.dialect.convertError(cause);
  return converted instanceof LockLostError ? converted : connectionLostError(cause, String((cause as Error)?.message ?? cause), '', { cause });
}

function newTxState(inst: Installation, connection: PortConnection, isolation?: IsolationLevel): TxState {
  return {
    id: nextTxId++,
    inst,
    connection,
    manager: connection.manager,
    dialect: inst.dialect,
    isolation,
    memo: new Map(),
    scope: { live: true },
  };
}

/** The current frame's transactions with `tx` as the innermost. */
function txsWith(tx: TxState): Map<Installation, TxState> {
  const txs = new Map(currentFrame()?.txs ?? []);
  txs.delete(tx.inst);
  txs.set(tx.inst, tx);
  return txs;
}

/** The current frame with `tx` as the innermost transaction. */
function frameWith(tx: TxState) {
  return childFrame({ txs: txsWith(tx) });
}

/**
 * Runs `fn` with a transaction that the ORM (not ormlock) opened on `connection` — the one
 * `save()` opens outside `transaction()`, or the ORM's own `transaction(cb)` — as the ambient
 * transaction of `inst`, so that locks and repositories used inside take that connection.
 * Does not commit or release; the scope ends when `fn` settles.
 */
export async function runWithAmbientConnection<T>(inst: Installation, connection: PortConnection, fn: () => Promise<T> | T): Promise<T> {
  if (ambientTx(inst)?.connection === connection) return fn();
  const tx = newTxState(inst, connection);
  try {
    return await runInFrame(frameWith(tx), inst.port.enter ? () => inst.port.enter!(connection, fn) : fn);
  } finally {
    tx.scope.live = false;
  }
}

/**
 * The connection a `{ dataSource }` option names when it names one (a TypeORM QueryRunner, or its
 * `manager`), else undefined. A released one is a LockConfigError (before anything is sent).
 */
export function namedConnection(inst: Installation, explicit: unknown, caller: string): PortConnection | undefined {
  if (explicit === undefined || explicit === null) return undefined;
  const connection = inst.port.connectionOf?.(explicit);
  if (connection?.isReleased) {
    throw releasedQueryRunner(caller);
  }
  return connection;
}

/**
 * Runs `fn` on the connection a `{ dataSource }` option names (see `namedConnection`): a
 * transaction the user opened on it by hand (`queryRunner.startTransaction()`) is the ambient
 * transaction while `fn` runs — ormlock calls inside join it, and never commit or release it; an
 * idle one is pinned for `fn` (a transaction opens on it, session locks are taken on it). Anything
 * else (a DataSource, a plain manager, undefined): just `fn()`.
 */
export async function onNamedConnection<T>(inst: Installation, explicit: unknown, caller: string, fn: () => Promise<T>): Promise<T> {
  const connection = namedConnection(inst, explicit, caller);
  if (!connection) return fn();
  if (ambientTx(inst)?.connection === connection) return fn();
  // a named connection is one unit of work at a time: a sibling's transaction on it is never joined
  return runWithTurn(connection, async () => {
    if (connection.isTransactionActive) return runWithAmbientConnection(inst, connection, fn); // its owner's own transaction
    if (pinnedConnection(inst) === connection) return fn();
    const scope = { live: true };
    const pinned = new Map(currentFrame()?.pinned ?? []).set(inst, { connection, scope });
    try {
      return await runInFrame(childFrame({ pinned }), fn);
    } finally {
      scope.live = false;
    }
  }) as Promise<T>;
}

/**
 * The ambient transaction's manager, or the default one outside a transaction. Typed from what
 * you pass (a TypeORM DataSource: its EntityManager; a MikroORM instance: its EntityManager);
 * without one, the ORM's manager type where the adapter declares it, else `unknown` (never a
 * silent `any`): `currentManager<EntityManager>()`.
 */
export function currentManager<S extends { readonly manager: object }>(dataSource: S): S['manager'];
export function currentManager<S extends { readonly em: object }>(orm: S): S['em'];
export function currentManager<M = KnownOr<OrmManager>>(dataSource?: unknown): M;
export function currentManager(dataSource?: unknown): any {
  const inst = resolveInstallation('currentManager()', { explicit: dataSource });
  return ambientTx(inst)?.manager ?? inst.port.defaultManager;
}

/** `unknown` for `any` (an ORM manager type nobody declared). */
type KnownOr<T> = 0 extends 1 & T ? unknown : T;

/** True when a transaction is open on the installation in this async context. */
export function inTransaction(dataSource?: unknown): boolean {
  return ambientTx(resolveInstallation('inTransaction()', { explicit: dataSource })) !== undefined;
}
