import type { PortConnection as QueryRunner } from '../orm/port';
import { forgetLock, noteLock, type HeldLock } from '../context/connection-model';
import { lockLostError } from '../context/lock-scope';
import { isReleasedRunnerError as isReleasedError } from '../dialects/lost-connection';
import { LockError, LockLostError } from '../errors';
import { advisoryHeldElsewhere, advisoryTimedOut } from '../faults/advisory';
import { describeKey } from './advisory-key';
import { heldFor, kindOf, type LockItem, type Plan } from './advisory-plan';
import { inSavepoint } from './savepoint';

/**
 * Taking a plan's advisory locks on a connection (in order, within the time budget, nothing left
 * held on failure), and the errors and events of taking them.
 */

/** Thrown inside the savepoint when a lock was not obtained in time, so that it rolls back. */
class NotObtained extends Error {
  constructor(readonly item: LockItem) {
    super('advisory lock not obtained');
  }
}

/**
 * Takes `items` in order on `qr` within the time budget. On failure (not obtained in time, or
 * an error) nothing stays held: session locks taken so far are released, and where the
 * database aborts a transaction on a failed statement, a caller's transaction (`protect`) is
 * kept usable by a savepoint (`inSavepoint`, whose rollback also drops transaction locks taken
 * in it; an error that ended the whole transaction comes out converted, never as a savepoint error).
 * Resolves the item that was not obtained, or undefined when all were.
 */
export function acquireAll(
  plan: Plan,
  qr: QueryRunner,
  items: readonly LockItem[],
  kind: 'transaction' | 'session',
  protect: boolean,
  standIn = false,
  records?: Map<string, HeldLock>,
): Promise<LockItem | undefined> {
  const { adv, timeoutMs } = plan;
  const savepoint = protect && adv.failedStatementAbortsTransaction && timeoutMs !== undefined && (timeoutMs > 0 || items.length > 1);
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const scope = kind === 'transaction' ? 'transaction' : standIn ? 'until-end' : 'session';
  if (savepoint || items.length !== 1) return acquireEach(plan, qr, items, kind, savepoint, deadline, scope, records);
  // one lock without a savepoint (the common case): the same steps in one `then`, no async function
  const item = items[0];
  let obtained: Promise<boolean>;
  try {
    obtained = lockOne(plan, qr, item, kind, deadline);
  } catch (error) {
    return Promise.reject(convert(plan, error, qr, true));
  }
  return obtained.then(
    (ok) => {
      if (!ok) return item;
      noteTaken(plan, qr, item, scope, [], records);
      return undefined;
    },
    (error: unknown) => {
      throw convert(plan, error, qr, true);
    },
  );
}

/** `acquireAll`'s steps for several locks, or in a savepoint. */
async function acquireEach(
  plan: Plan,
  qr: QueryRunner,
  items: readonly LockItem[],
  kind: 'transaction' | 'session',
  savepoint: boolean,
  deadline: number | undefined,
  scope: 'transaction' | 'session' | 'until-end',
  records: Map<string, HeldLock> | undefined,
): Promise<LockItem | undefined> {
  const taken: Array<{ item: LockItem; held: HeldLock }> = [];
  try {
    if (savepoint) {
      await inSavepoint(plan.inst, qr, 'ormlock_advisory', async () => {
        for (const item of items) {
          if (!(await lockOne(plan, qr, item, kind, deadline))) throw new NotObtained(item);
          noteTaken(plan, qr, item, scope, taken, records);
        }
      });
    } else {
      // the same steps without a savepoint, and without one more async function per call
      for (const item of items) {
        if (!(await lockOne(plan, qr, item, kind, deadline))) throw new NotObtained(item);
        noteTaken(plan, qr, item, scope, taken, records);
      }
    }
    return undefined;
  } catch (error) {
    // transaction locks end with the savepoint (the model dropped them) or with the transaction
    if (kind === 'session') await releaseTaken(plan, qr, taken);
    if (error instanceof NotObtained) return error.item;
    throw convert(plan, error, qr, true);
  }
}

/** Takes one lock of the plan on `qr`, within what remains of the time budget. */
function lockOne(plan: Plan, qr: QueryRunner, item: LockItem, kind: 'transaction' | 'session', deadline: number | undefined): Promise<boolean> {
  const remaining = deadline === undefined ? undefined : Math.max(0, deadline - Date.now());
  return kind === 'transaction'
    ? plan.adv.lockForTransaction!(qr, item.id, plan.shared, remaining, item.key)
    : plan.adv.lockForSession(qr, item.id, plan.shared, remaining, item.key);
}

/** Notes a lock just taken in the connection model (and in `records`). */
function noteTaken(
  plan: Plan,
  qr: QueryRunner,
  item: LockItem,
  scope: 'transaction' | 'session' | 'until-end',
  taken: Array<{ item: LockItem; held: HeldLock }>,
  records: Map<string, HeldLock> | undefined,
): void {
  const held = noteLock(qr, lockRecord(plan, item), scope, plan.dialect.capabilities.rollbackToSavepointReleasesLocks);
  taken.push({ item, held });
  records?.set(item.id, held);
}

/** Releases the session locks a failed acquisition took so far (last taken first). */
async function releaseTaken(plan: Plan, qr: QueryRunner, taken: ReadonlyArray<{ item: LockItem; held: HeldLock }>): Promise<void> {
  for (const { item, held } of [...taken].reverse()) {
    try {
      await plan.adv.unlockSession(qr, item.id, plan.shared);
      forgetLock(qr, held);
    } catch (error) {
      // an aborted transaction refuses the unlock: it is released right after that transaction ends
      if (qr.isTransactionActive && plan.adv.isAbortedTransaction(error)) keepUntilTransactionEnd(qr, held);
      else forgetLock(qr, held);
    }
  }
}

/** A driver error as an ormlock error; a lost connection is LockLostError. */
export function convert(plan: Plan, error: unknown, qr: QueryRunner | undefined, lockWait = false): unknown {
  if (error instanceof LockError) return error;
  if (plan.adv.isConnectionLost(error) || (qr && (qr as { isReleased?: boolean }).isReleased && isReleasedError(error))) {
    return lostError(plan, plan.locks, error);
  }
  return plan.dialect.convertError(error, { key: plan.locks[0]?.key.key, method: plan.subject.method, timeoutMs: plan.timeoutMs, lockWait }) ?? error;
}

export function lostError(plan: Plan, items: readonly LockItem[], cause: unknown): LockLostError {
  for (const item of items) plan.inst.emit({ type: 'lost', kind: kindOf(plan), target: item.key.display, heldMs: heldFor(item) });
  const keys = items.map((i) => describeKey(i.key.key)).join(', ');
  return lockLostError(plan.subject.label, `advisory lock ${keys}`, {
    key: items.length === 1 ? items[0].key.key : items.map((i) => i.key.key),
    method: plan.subject.method,
    entity: plan.subject.entity,
    cause,
  });
}

export async function notObtained(plan: Plan, item: LockItem, startedAt: number, describe: boolean): Promise<LockError> {
  const waitedMs = Date.now() - startedAt;
  const base = { key: item.key.key, method: plan.subject.method, entity: plan.subject.entity, waitedMs };
  if (plan.timeoutMs === 0) {
    plan.inst.emit({ type: 'not_available', kind: kindOf(plan), target: item.key.display, waitedMs });
    return advisoryHeldElsewhere(plan.subject.label, describeKey(item.key.key), base);
  }
  plan.inst.emit({ type: 'timeout', kind: kindOf(plan), target: item.key.display, waitedMs });
  const blockers = describe && plan.adv.describeHolders ? await plan.adv.describeHolders(plan.inst.port.serverAddress(), item.id) : [];
  const who = blockers.length ? `; held by ${blockers.map((b) => `pid ${b.pid} (${(b.query ?? '').slice(0, 200)})`).join(', ')}` : '';
  return advisoryTimedOut(plan.subject.label, describeKey(item.key.key), plan.timeoutMs, who, { ...base, blockers: blockers.length ? blockers : undefined });
}

export function acquired(plan: Plan, items: readonly LockItem[], startedAt: number): void {
  const now = Date.now();
  const waitedMs = now - startedAt;
  const observed = plan.inst.observers.length > 0; // no event objects for nobody
  for (const item of items) {
    item.at = now;
    if (observed) plan.inst.emit({ type: 'acquired', kind: kindOf(plan), target: item.key.display, waitedMs });
  }
}

/**
 * Takes transaction-scoped locks on `qr`, whose transaction is open. Registers them as held by
 * that transaction (and, for databases without transaction locks, to be released when it ends).
 * Resolves the item not obtained in time, or undefined.
 */
export function acquireForTransaction(plan: Plan, qr: QueryRunner, items: readonly LockItem[], protect: boolean): Promise<LockItem | undefined> {
  const native = plan.dialect.capabilities.transactionAdvisoryLocks && typeof plan.adv.lockForTransaction === 'function';
  return acquireAll(plan, qr, items, native ? 'transaction' : 'session', protect, !native);
}

/** What the connection model records of one advisory lock. */
function lockRecord(plan: Plan, item: LockItem) {
  return { inst: plan.inst, kind: kindOf(plan), id: item.id, shared: plan.shared, display: item.key.display };
}

/** A session lock whose unlock the open transaction refused: released on this connection right after it ends. */
export function keepUntilTransactionEnd(qr: QueryRunner, held: HeldLock): void {
  held.untilTransactionEnd = true;
  held.level = Math.max(0, held.level);
}
