import type { PortConnection as QueryRunner, PortTransaction } from '../orm/port';
import { ambientTx, currentFrame, lockScopeFrame, pinnedConnection, runInFrame, type Scope, type TxState } from '../context/store';
import { openLockedTransaction, poolWait, type TransactionLock } from '../context/transaction';
import { forgetLock, type HeldLock } from '../context/connection-model';
import { runWithTurn, TURN_TIMED_OUT } from '../context/turns';
import { isConnectionLost, runLockedBody, type LockedBody } from '../context/lock-scope';
import type { LockScope } from '../context/lock-signal';
import { isReleasedRunnerError as isReleasedError } from '../dialects/lost-connection';
import { LockLostError } from '../errors';
import type { AdvisoryLockContext } from './advisory-options';
import { heldFor, kindOf, type LockItem, type Plan } from './advisory-plan';
import { toAcquire, withHeld } from './advisory-held';
import { acquireAll, acquired, acquireForTransaction, convert, keepUntilTransactionEnd, lostError, notObtained } from './advisory-acquire';
import { afterSiblings, siblingsDone } from './advisory-siblings';

/**
 * The two scopes of an advisory lock: `transaction` (held until the transaction the body runs in
 * ends: the ambient one, or one opened for the call) and `session` (held for the body only, on
 * the ambient transaction's connection, a pinned one, or one taken for the call).
 */

class Skipped extends Error {
  constructor() {
    super('advisory lock not obtained: skipped');
  }
}

/**
 * What the body gets. A class, not an object literal with getters (V8 builds such a literal on a
 * slow path on every call); `keys` and `signal` are made on first use, as a decorated method never
 * reads them.
 */
class LockContext implements AdvisoryLockContext {
  readonly queryRunner: any;
  readonly manager: any;
  readonly scope: AdvisoryLockContext['scope'];
  readonly acquired: boolean;
  readonly #plan: Plan;
  readonly #lockScope: LockScope;
  #keys?: string[];

  constructor(qr: QueryRunner, plan: Plan, acquired: boolean, lockScope: LockScope) {
    this.queryRunner = qr;
    this.manager = qr.manager;
    this.scope = plan.scope;
    this.acquired = acquired;
    this.#plan = plan;
    this.#lockScope = lockScope;
  }

  get keys(): string[] {
    return (this.#keys ??= this.#plan.locks.map((l) => l.key.display));
  }

  get signal(): AbortSignal {
    return this.#lockScope.signal;
  }
}

/** The lock scope of a body holding `items` on `qr` (its signal aborts, and the call rejects, when `qr` dies). */
function lockedBody(plan: Plan, qr: QueryRunner, items: readonly LockItem[]): LockedBody {
  return { inst: plan.inst, connection: qr, lost: (cause) => lostError(plan, items.length ? items : plan.locks, cause) };
}

export function runTransactionScoped<T>(plan: Plan, fn: (ctx: AdvisoryLockContext) => Promise<T> | T): Promise<T | undefined> {
  const joined = ambientTx(plan.inst);
  if (joined) return lockInTransaction(plan, joined, fn);
  let qr: QueryRunner | undefined;
  // a transaction opened for this call has no siblings: nothing else runs in it but this body and
  // what it calls (which holds the key: re-entry, never a sibling's wait). Its lock scope is the
  // body's: the lock's once taken (`lock.lostAs`), no second scope inside it.
  const lock: TransactionLock = {};
  const body = (scope: LockScope) => {
    const tx = ambientTx(plan.inst)!;
    qr = tx.connection;
    return lockAndRun(plan, tx, qr, false, fn, lock, scope);
  };
  // on the pinned connection, if a session lock pinned one (transaction()'s own path, its options known)
  return openLockedTransaction(plan.inst, lock, body).then(undefined, (error) => {
    if (error instanceof Skipped) return undefined;
    throw convert(plan, error, qr);
  });
}

/** Joins the ambient transaction `tx`: sibling calls for one key on its connection take turns. */
async function lockInTransaction<T>(plan: Plan, tx: TxState, fn: (ctx: AdvisoryLockContext) => Promise<T> | T): Promise<T | undefined> {
  const startedAt = Date.now();
  const sibling = afterSiblings(plan, tx.memo);
  try {
    if (sibling.ready && !(await siblingsDone(plan, sibling))) {
      // a sibling's body holds the key on this connection: the call's own time limit applies to that wait too
      if (plan.onTimeout === 'skip') {
        await notObtained(plan, plan.locks[0], startedAt, false);
        return undefined;
      }
      throw await notObtained(plan, plan.locks[0], startedAt, false);
    }
    return await lockAndRun(plan, tx, tx.connection, true, fn);
  } finally {
    sibling.done();
  }
}

async function lockAndRun<T>(
  plan: Plan,
  tx: TxState,
  qr: QueryRunner,
  joined: boolean,
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  lock?: TransactionLock,
  txScope?: LockScope,
): Promise<T | undefined> {
  const items = toAcquire(plan, qr);
  const startedAt = Date.now();
  if (items.length) {
    const failed = await acquireForTransaction(plan, qr, items, joined);
    if (failed) {
      if (plan.onTimeout === 'skip') {
        await notObtained(plan, failed, startedAt, false);
        if (joined) return undefined;
        throw new Skipped(); // rolls back the transaction opened for this call
      }
      throw await notObtained(plan, failed, startedAt, true);
    }
    acquired(plan, items, startedAt);
  }
  const live: Scope = { live: true };
  try {
    if (lock && txScope) return await runAsTransactionScope(plan, qr, items, live, lock, txScope, fn);
    return await runLockedBody(
      lockedBody(plan, qr, items),
      (lockScope) => fn(new LockContext(qr, plan, items.length > 0, lockScope)),
      withHeld(plan, items, 'transaction', live, qr),
    );
  } catch (error) {
    if (plan.adv.isConnectionLost(error) || ((qr as { isReleased?: boolean }).isReleased && isReleasedError(error))) {
      throw lostError(plan, plan.locks, error);
    }
    throw error;
  } finally {
    live.live = false;
  }
}

/**
 * The body of a transaction opened for this call, in that transaction's lock scope `scope` (see
 * `openLockedTransaction`), which from now on is the lock's: a dead connection rejects the call with
 * the lock's error, and the body's own errors are read as `runLockedBody` reads them. Its frame adds
 * what the body holds.
 */
function runAsTransactionScope<T>(
  plan: Plan,
  qr: QueryRunner,
  items: readonly LockItem[],
  live: Scope,
  lock: TransactionLock,
  scope: LockScope,
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
): Promise<T> {
  // not an async function: its caller awaits it inside its own try, so this adds one `then`, not a frame
  const lost = (cause: unknown) => lostError(plan, items.length ? items : plan.locks, cause); // as lockedBody's
  lock.lostAs = lost;
  if (scope.aborted) {
    // lost before the body began: the call rejected already, with the transaction's error
    const dead = plan.inst.port.lostSignal?.(qr);
    if (dead?.aborted) lost(dead.reason); // its events, as a scope of its own would have reported
    return Promise.reject(scope.reason);
  }
  // the error the call rejects with: the scope's loss, the lock's loss, or the body's own
  const converted = (error: unknown): unknown => (scope.aborted ? scope.reason : isConnectionLost(plan.inst, error) ? lost(error) : error);
  const parent = currentFrame()!;
  // the current frame with what the body holds (one object of the frame's shape, not two spreads)
  const frame = lockScopeFrame(parent, withHeld(plan, items, 'transaction', live, qr), parent.lockScope!);
  try {
    return Promise.resolve(runInFrame(frame, () => fn(new LockContext(qr, plan, items.length > 0, scope)))).then(undefined, (error: unknown) => {
      throw converted(error);
    });
  } catch (error) {
    return Promise.reject(converted(error));
  }
}

export async function runSessionScoped<T>(plan: Plan, fn: (ctx: AdvisoryLockContext) => Promise<T> | T): Promise<T | undefined> {
  const tx = ambientTx(plan.inst);
  const startedAt = Date.now();
  if (tx) {
    // siblings in one transaction: bodies for one key take turns (registered before the first await)
    const sibling = afterSiblings(plan, tx.memo);
    try {
      if (sibling.ready && !(await siblingsDone(plan, sibling))) return siblingTimedOut(plan, startedAt);
      return await runSessionOn(plan, tx, tx.connection, fn);
    } finally {
      sibling.done();
    }
  }
  const pinned = pinnedConnection(plan.inst);
  if (!pinned) return runSessionOn(plan, undefined, undefined, fn);
  // a pinned connection outside a transaction: one unit of work at a time, in call order
  const outcome = await runWithTurn(pinned, () => runSessionOn(plan, undefined, pinned, fn), plan.timeoutMs);
  return outcome === TURN_TIMED_OUT ? siblingTimedOut(plan, startedAt) : outcome;
}

async function siblingTimedOut(plan: Plan, startedAt: number): Promise<undefined> {
  const error = await notObtained(plan, plan.locks[0], startedAt, false);
  if (plan.onTimeout === 'skip') return undefined;
  throw error;
}

async function runSessionOn<T>(
  plan: Plan,
  tx: TxState | undefined,
  shared: QueryRunner | undefined,
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
): Promise<T | undefined> {
  let qr = shared;
  const items = toAcquire(plan, qr);
  let own: PortTransaction | undefined;
  if (!qr) {
    try {
      own = await plan.inst.port.connect(poolWait(plan.inst, plan.subject.label));
    } catch (error) {
      throw convert(plan, error, undefined);
    }
    qr = own.connection;
  }
  const conn: QueryRunner = qr;
  const live: Scope = { live: true };
  const records = new Map<string, HeldLock>();
  try {
    const startedAt = Date.now();
    if (items.length) {
      const failed = await acquireAll(plan, conn, items, 'session', tx !== undefined, false, records);
      if (failed) {
        if (plan.onTimeout === 'skip') {
          await notObtained(plan, failed, startedAt, false);
          return undefined;
        }
        throw await notObtained(plan, failed, startedAt, true);
      }
      acquired(plan, items, startedAt);
    }
    let result: T | undefined;
    let bodyError: unknown;
    let failed = false;
    try {
      const held = conn;
      result = await runLockedBody(
        lockedBody(plan, held, items),
        (lockScope) => fn(new LockContext(held, plan, items.length > 0, lockScope)),
        withHeld(plan, items, 'session', live, conn, own ? conn : undefined),
      );
    } catch (error) {
      failed = true;
      bodyError = error;
    }
    live.live = false;
    const lost = await releaseSession(plan, conn, items, records);
    if (lost.length) throw bodyError instanceof LockLostError ? bodyError : lostError(plan, lost, failed ? bodyError : undefined);
    if (failed) {
      if (items.length && plan.adv.isConnectionLost(bodyError)) throw lostError(plan, items, bodyError);
      throw bodyError;
    }
    return result;
  } finally {
    live.live = false;
    if (own) await own.release().catch(() => undefined);
  }
}

/** Releases session locks on their connection (last taken first); resolves those found lost. */
async function releaseSession(plan: Plan, qr: QueryRunner, items: readonly LockItem[], records: Map<string, HeldLock>): Promise<LockItem[]> {
  const lost: LockItem[] = [];
  for (const item of [...items].reverse()) {
    const held = records.get(item.id);
    if ((qr as { isReleased?: boolean }).isReleased) {
      lost.push(item);
      if (held) forgetLock(qr, held);
      continue;
    }
    try {
      if (await plan.adv.unlockSession(qr, item.id, plan.shared))
        plan.inst.emit({ type: 'released', kind: kindOf(plan), target: item.key.display, heldMs: heldFor(item) });
      else lost.push(item);
      if (held) forgetLock(qr, held);
    } catch (error) {
      if (qr.isTransactionActive && plan.adv.isAbortedTransaction(error) && held) {
        // The body's failure aborted the caller's transaction, which refuses every statement
        // until it ends: released right after it ends, on this connection (the model's end handler).
        keepUntilTransactionEnd(qr, held);
        continue;
      }
      if (held) forgetLock(qr, held);
      lost.push(item);
    }
  }
  return lost;
}
