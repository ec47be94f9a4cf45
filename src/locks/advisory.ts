import type { PortConnection as QueryRunner, PortTransaction } from '../orm/port';
import {
  ambientTx, childFrame, currentFrame, pinnedConnection, runInFrame, type Scope, type TxState,
} from '../context/store';
import { transaction } from '../context/transaction';
import type { AdvisoryDialect, LockDialect } from '../dialects/dialect';
import {
  LockError, LockLostError, LockNotAvailableError, LockTimeoutError, TransactionRequiredError,
} from '../errors';
import { resolveInstallation, type Installation } from '../orm/installations';
import { inSavepoint } from './savepoint';
import {
  dueStandIns, forgetLock, heldHere, noteLock, onTransactionEnd, physical, type HeldLock,
} from '../context/connection-model';
import { runWithTurn, TURN_TIMED_OUT } from '../context/turns';
import { refuseUnderTransactionPooler } from './pooler-guard';
import { lockLostError, runLockedBody, type LockedBody } from '../context/lock-scope';
import type { LockScope } from '../context/lock-signal';
import { isReleasedRunnerError as isReleasedError } from '../dialects/lost-connection';
import { checkFunction, optionsProblems } from '../arguments';
import { namedConnection, onNamedConnection, poolWait } from '../context/transaction';
import {
  AdvisoryKeySet, describeKey, resolveAdvisoryKeys, type AdvisoryKey, type ResolvedAdvisoryKey,
} from './advisory-key';

export { advisoryKeys, AdvisoryKeySet } from './advisory-key';
export type { AdvisoryKey, AdvisoryKeyPart, AdvisoryKeyValue } from './advisory-key';
import {
  advisoryOptionProblems, checkAdvisoryOptionsFor, configError, evaluateAdvisoryKey,
  type AdvisoryLockContext, type AdvisoryLockExistsOptions, type AdvisoryLockOptions, type AdvisoryLockSkipOptions,
  type AdvisoryScope, type AdvisorySubject, type OnAdvisoryTimeout,
} from './advisory-options';

export { advisoryOptionProblems, checkAdvisoryOptionsFor, evaluateAdvisoryKey } from './advisory-options';
export type {
  AdvisoryLockContext, AdvisoryLockExistsOptions, AdvisoryLockOptions, AdvisoryLockSkipOptions, AdvisoryScope, AdvisorySubject, OnAdvisoryTimeout,
} from './advisory-options';

/**
 * Advisory locks (the strategy): `withAdvisoryLock`, `withAdvisoryLocks`, `advisoryLockExists`,
 * and the entity-write lock used by the advisory subscriber. Talks to the database only
 * through `LockDialect.advisory` and the capability flags.
 *
 * Scopes:
 * - `transaction` (default): the lock lives as long as the transaction the body runs in (the
 *   ambient one, or one opened for the call). PostgreSQL: `pg_advisory_xact_lock`, one
 *   statement, released by COMMIT/ROLLBACK. Databases without transaction-scoped advisory locks
 *   (MySQL/MariaDB: `capabilities.transactionAdvisoryLocks` false) take a session lock on the
 *   transaction's connection and release it right after that transaction ends (COMMIT or
 *   ROLLBACK), on the same connection, from the advisory subscriber's
 *   afterTransactionCommit/afterTransactionRollback — so the next holder always sees the
 *   committed data.
 * - `session`: the lock lives for the body only; it is taken on the ambient transaction's
 *   connection if there is one, else on a connection pinned for the whole call (a QueryRunner),
 *   and released in `finally` on that same connection. If that connection is lost the call
 *   fails with LockLostError, never carries on.
 */

// ---------------------------------------------------------------------------------------------
// plans

interface LockItem {
  readonly id: string;
  readonly key: ResolvedAdvisoryKey;
  /** When this call took it (for heldMs). */
  at?: number;
}

interface Plan {
  readonly inst: Installation;
  readonly dialect: LockDialect;
  readonly adv: AdvisoryDialect;
  readonly scope: AdvisoryScope;
  readonly shared: boolean;
  readonly timeoutMs?: number;
  readonly onTimeout: OnAdvisoryTimeout;
  /** Distinct locks in canonical order (sorted by the dialect's id). */
  readonly locks: readonly LockItem[];
  readonly subject: AdvisorySubject;
}

function makePlan(inst: Installation, key: unknown, options: AdvisoryLockOptions, subject: AdvisorySubject, checked = false): Plan {
  const problems = checked ? [] : advisoryOptionProblems(options);
  if (problems.length) throw configError(subject, problems.join('; '));
  checkAdvisoryOptionsFor(inst.dialect, options, subject);
  refuseSessionLocksUnderPooler(inst, options.scope ?? 'transaction', subject);
  const adv = inst.dialect.advisory;
  const byId = new Map<string, LockItem>();
  for (const resolved of resolveAdvisoryKeys(key, inst.settings.namespace, subject)) {
    const id = adv.lockId(resolved);
    if (!byId.has(id)) byId.set(id, { id, key: resolved });
  }
  const locks = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return {
    inst,
    dialect: inst.dialect,
    adv,
    scope: options.scope ?? 'transaction',
    shared: options.shared === true,
    timeoutMs: options.timeoutMs ?? inst.settings.advisoryTimeoutMs,
    onTimeout: options.onTimeout ?? 'throw',
    locks,
    subject,
  };
}

/**
 * Behind a transaction-pooling pooler a session lock has no owner: session scope is refused, and
 * so is transaction scope where the database has no transaction-scoped advisory locks (it is a
 * session lock released after COMMIT there).
 */
export function refuseSessionLocksUnderPooler(inst: Installation, scope: AdvisoryScope, subject: AdvisorySubject): void {
  if (scope === 'session') refuseUnderTransactionPooler(inst, subject, 'session-scope advisory locks');
  else if (!inst.dialect.capabilities.transactionAdvisoryLocks) {
    refuseUnderTransactionPooler(inst, subject, `advisory locks on ${inst.dialect.name} (session locks, released after COMMIT)`, { scopeTransactionHelps: false });
  }
}

// ---------------------------------------------------------------------------------------------
// what this async context (and each connection's open transaction) holds

function heldKey(inst: Installation, id: string): string {
  return `${inst.id}|${id}`;
}

/** The advisory (or tree) lock `id` as the connection model has it on `qr`. */
function heldOn(qr: object, id: string): HeldLock | undefined {
  return heldHere(qr, 'advisory', id) ?? heldHere(qr, 'tree', id);
}

/**
 * Whether this context holds `item` already: a lock scope of this async context that still runs
 * and whose connection still holds it (per the connection model), or the connection `qr` itself.
 */
function heldBy(plan: Plan, item: LockItem, qr: QueryRunner | undefined): { shared: boolean } | undefined {
  const frameHeld = currentFrame()?.advisoryHeld?.get(heldKey(plan.inst, item.id));
  if (frameHeld && frameHeld.live.live && (!frameHeld.connection || heldOn(frameHeld.connection, item.id))) return { shared: frameHeld.shared };
  const onRunner = qr ? heldOn(qr, item.id) : undefined;
  return onRunner ? { shared: onRunner.shared } : undefined;
}

/** The locks of the plan this context does not hold yet (a held shared lock cannot be upgraded). */
function toAcquire(plan: Plan, qr: QueryRunner | undefined): LockItem[] {
  return plan.locks.filter((item) => {
    const held = heldBy(plan, item, qr);
    if (!held) return true;
    if (held.shared && !plan.shared) {
      throw configError(
        plan.subject,
        `advisory lock ${describeKey(item.key.key)} is already held shared by this context; it cannot be upgraded to exclusive ` +
          `(that would deadlock with the other shared holders). Take it exclusive in the outer call.`,
        { key: item.key.key },
      );
    }
    return false;
  });
}

function withHeld(plan: Plan, items: readonly LockItem[], scope: AdvisoryScope, live: Scope, connection: QueryRunner, pinned?: QueryRunner) {
  const frame = currentFrame();
  const advisoryHeld = new Map(frame?.advisoryHeld ?? []);
  // every lock of the plan: those taken now, and those the connection already held (the body is
  // their holder too, so its own children never queue behind it as siblings)
  for (const item of plan.locks) {
    const key = heldKey(plan.inst, item.id);
    if (!items.includes(item) && advisoryHeld.get(key)?.live.live) continue;
    const shared = items.includes(item) ? plan.shared : heldOn(connection, item.id)?.shared ?? plan.shared;
    advisoryHeld.set(key, { scope, shared, display: item.key.display, live, connection: physical(connection) });
  }
  return childFrame({
    advisoryHeld,
    ...(pinned ? { pinned: new Map(frame?.pinned ?? []).set(plan.inst, { connection: pinned, scope: live }) } : {}),
  });
}

// ---------------------------------------------------------------------------------------------
// acquiring

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
async function acquireAll(
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
  const taken: Array<{ item: LockItem; held: HeldLock }> = [];
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const releaseTaken = async () => {
    // transaction locks end with the savepoint (the model dropped them) or with the transaction
    if (kind !== 'session') return;
    for (const { item, held } of [...taken].reverse()) {
      try {
        await adv.unlockSession(qr, item.id, plan.shared);
        forgetLock(qr, held);
      } catch (error) {
        // an aborted transaction refuses the unlock: it is released right after that transaction ends
        if (qr.isTransactionActive && adv.isAbortedTransaction(error)) keepUntilTransactionEnd(qr, held);
        else forgetLock(qr, held);
      }
    }
  };
  const takeAll = async () => {
    for (const item of items) {
      const remaining = deadline === undefined ? undefined : Math.max(0, deadline - Date.now());
      const got = kind === 'transaction'
        ? await adv.lockForTransaction!(qr, item.id, plan.shared, remaining, item.key)
        : await adv.lockForSession(qr, item.id, plan.shared, remaining, item.key);
      if (!got) throw new NotObtained(item);
      const held = noteLock(qr, lockRecord(plan, item), kind === 'transaction' ? 'transaction' : standIn ? 'until-end' : 'session', plan.dialect.capabilities.rollbackToSavepointReleasesLocks);
      taken.push({ item, held });
      records?.set(item.id, held);
    }
  };
  try {
    await (savepoint ? inSavepoint(plan.inst, qr, 'ormlock_advisory', takeAll) : takeAll());
    return undefined;
  } catch (error) {
    await releaseTaken();
    if (error instanceof NotObtained) return error.item;
    throw convert(plan, error, qr, true);
  }
}

/** A driver error as an ormlock error; a lost connection is LockLostError. */
function convert(plan: Plan, error: unknown, qr: QueryRunner | undefined, lockWait = false): unknown {
  if (error instanceof LockError) return error;
  if (plan.adv.isConnectionLost(error) || (qr && (qr as { isReleased?: boolean }).isReleased && isReleasedError(error))) {
    return lostError(plan, plan.locks, error);
  }
  return plan.dialect.convertError(error, { key: plan.locks[0]?.key.key, method: plan.subject.method, timeoutMs: plan.timeoutMs, lockWait }) ?? error;
}

function lostError(plan: Plan, items: readonly LockItem[], cause: unknown): LockLostError {
  for (const item of items) plan.inst.emit({ type: 'lost', kind: kindOf(plan), target: item.key.display, heldMs: heldFor(item) });
  const keys = items.map((i) => describeKey(i.key.key)).join(', ');
  return lockLostError(plan.subject.label, `advisory lock ${keys}`, {
    key: items.length === 1 ? items[0].key.key : items.map((i) => i.key.key), method: plan.subject.method, entity: plan.subject.entity, cause,
  });
}

async function notObtained(plan: Plan, item: LockItem, startedAt: number, describe: boolean): Promise<LockError> {
  const waitedMs = Date.now() - startedAt;
  const base = { key: item.key.key, method: plan.subject.method, entity: plan.subject.entity, waitedMs };
  if (plan.timeoutMs === 0) {
    plan.inst.emit({ type: 'not_available', kind: kindOf(plan), target: item.key.display, waitedMs });
    return new LockNotAvailableError(`${plan.subject.label}: advisory lock ${describeKey(item.key.key)} is held elsewhere (timeoutMs: 0)`, base);
  }
  plan.inst.emit({ type: 'timeout', kind: kindOf(plan), target: item.key.display, waitedMs });
  const blockers = describe && plan.adv.describeHolders ? await plan.adv.describeHolders(plan.inst.port.serverAddress(), item.id) : [];
  const who = blockers.length ? `; held by ${blockers.map((b) => `pid ${b.pid} (${(b.query ?? '').slice(0, 200)})`).join(', ')}` : '';
  return new LockTimeoutError(
    `${plan.subject.label}: advisory lock ${describeKey(item.key.key)} not obtained within ${plan.timeoutMs} ms${who}`,
    { ...base, blockers: blockers.length ? blockers : undefined },
  );
}

function acquired(plan: Plan, items: readonly LockItem[], startedAt: number): void {
  const waitedMs = Date.now() - startedAt;
  const now = Date.now();
  for (const item of items) {
    item.at = now;
    plan.inst.emit({ type: 'acquired', kind: kindOf(plan), target: item.key.display, waitedMs });
  }
}

function kindOf(plan: Plan): 'advisory' | 'tree' {
  return plan.subject.kind ?? 'advisory';
}

function heldFor(item: LockItem): number | undefined {
  return item.at === undefined ? undefined : Date.now() - item.at;
}

/**
 * Takes transaction-scoped locks on `qr`, whose transaction is open. Registers them as held by
 * that transaction (and, for databases without transaction locks, to be released when it ends).
 * Resolves the item not obtained in time, or undefined.
 */
async function acquireForTransaction(plan: Plan, qr: QueryRunner, items: readonly LockItem[], protect: boolean) {
  const native = plan.dialect.capabilities.transactionAdvisoryLocks && typeof plan.adv.lockForTransaction === 'function';
  return acquireAll(plan, qr, items, native ? 'transaction' : 'session', protect, !native);
}

/** What the connection model records of one advisory lock. */
function lockRecord(plan: Plan, item: LockItem) {
  return { inst: plan.inst, kind: kindOf(plan), id: item.id, shared: plan.shared, display: item.key.display };
}

/** A session lock whose unlock the open transaction refused: released on this connection right after it ends. */
function keepUntilTransactionEnd(qr: QueryRunner, held: HeldLock): void {
  held.untilTransactionEnd = true;
  held.level = Math.max(0, held.level);
}

/**
 * After a transaction on `qr` ended (the connection model's end handler): releases, on the same
 * connection, the session locks that stood in for transaction locks. A lock that was no longer
 * held is a LockLostError.
 */
async function releaseStandIns(qr: object, ended: readonly HeldLock[]): Promise<void> {
  const conn = qr as QueryRunner;
  const standIns = ended.filter((l) => l.untilTransactionEnd && (l.kind === 'advisory' || l.kind === 'tree'));
  if (!standIns.length) return;
  const lost: HeldLock[] = [];
  let cause: unknown;
  for (const held of [...standIns].reverse()) {
    try {
      if (conn.isReleased) lost.push(held);
      else if (await held.inst.dialect.advisory.unlockSession(conn, held.id, held.shared)) {
        held.inst.emit({ type: 'released', kind: held.kind, target: held.display, heldMs: Date.now() - held.at });
      } else lost.push(held);
    } catch (error) {
      lost.push(held);
      cause ??= error;
    } finally {
      forgetLock(conn, held);
    }
  }
  if (lost.length) {
    const now = Date.now();
    for (const l of lost) l.inst.emit({ type: 'lost', kind: l.kind, target: l.display, heldMs: now - l.at });
    throw new LockLostError(
      `${lost[0].kind === 'tree' ? 'tree lock' : 'advisory lock'}: the connection holding ${lost.map((l) => l.display).join(', ')} was lost; the lock was not held to the end`,
      { key: lost.length === 1 ? lost[0].display : lost.map((l) => l.display), cause },
    );
  }
}
onTransactionEnd(releaseStandIns);

/**
 * Kept for the adapters that call it after a transaction ended on `qr`: releases the stand-ins
 * still due (the connection model's end handlers normally did so already).
 */
export function afterAdvisoryTransactionEnd(qr: QueryRunner): Promise<void> | undefined {
  if (qr.isTransactionActive) return undefined; // a savepoint ended, not the transaction
  const due = dueStandIns(qr);
  return due.length ? releaseStandIns(qr, due) : undefined;
}

class Skipped extends Error {
  constructor() {
    super('advisory lock not obtained: skipped');
  }
}

// ---------------------------------------------------------------------------------------------
// scopes

function context(qr: QueryRunner, plan: Plan, acquiredNow: boolean, lockScope: LockScope): AdvisoryLockContext {
  return {
    queryRunner: qr as any, manager: qr.manager, scope: plan.scope, keys: plan.locks.map((l) => l.key.display), acquired: acquiredNow,
    get signal() {
      return lockScope.signal; // made on first use
    },
  };
}

/** The lock scope of a body holding `items` on `qr` (its signal aborts, and the call rejects, when `qr` dies). */
function lockedBody(plan: Plan, qr: QueryRunner, items: readonly LockItem[]): LockedBody {
  return { inst: plan.inst, connection: qr, lost: (cause) => lostError(plan, items.length ? items : plan.locks, cause) };
}

async function runTransactionScoped<T>(plan: Plan, fn: (ctx: AdvisoryLockContext) => Promise<T> | T): Promise<T | undefined> {
  const joined = ambientTx(plan.inst);
  if (joined) return lockInTransaction(plan, joined, true, fn);
  let qr: QueryRunner | undefined;
  const body = () => {
    const tx = ambientTx(plan.inst)!;
    qr = tx.connection;
    return lockInTransaction(plan, tx, false, fn);
  };
  try {
    return await transaction(body, { dataSource: plan.inst.port.target }); // on the pinned connection, if a session lock pinned one
  } catch (error) {
    if (error instanceof Skipped) return undefined;
    throw convert(plan, error, qr);
  }
}

async function lockInTransaction<T>(
  plan: Plan,
  tx: TxState,
  joined: boolean,
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
): Promise<T | undefined> {
  const qr = tx.connection;
  const startedAt = Date.now();
  const sibling = afterSiblings(plan, tx.memo);
  try {
    if (!(await siblingsDone(plan, sibling))) {
      // a sibling's body holds the key on this connection: the call's own time limit applies to that wait too
      if (plan.onTimeout === 'skip') {
        await notObtained(plan, plan.locks[0], startedAt, false);
        if (joined) return undefined;
        throw new Skipped();
      }
      throw await notObtained(plan, plan.locks[0], startedAt, false);
    }
    return await lockAndRun(plan, tx, qr, joined, fn);
  } finally {
    sibling.done();
  }
}

/** Waits for the sibling bodies ahead of this call, within the call's time limit; false when the limit passed first. */
async function siblingsDone(plan: Plan, sibling: SiblingTurn): Promise<boolean> {
  if (!sibling.ready) return true;
  if (plan.timeoutMs === undefined) {
    await sibling.ready;
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const late = Symbol('late');
  const outcome = await Promise.race([
    sibling.ready,
    new Promise<symbol>((resolve) => (timer = setTimeout(() => resolve(late), plan.timeoutMs))),
  ]).finally(() => clearTimeout(timer));
  return outcome !== late;
}

interface SiblingTurn {
  /** Settles when the sibling bodies ahead are done; undefined when none is ahead. */
  readonly ready?: Promise<unknown>;
  /** This call's body is done (or it gave up waiting): the next sibling may go. */
  readonly done: () => void;
}

/**
 * Sibling calls on one connection (`Promise.all` of two calls for one key inside one transaction
 * or one session lock's pinned connection) run their bodies one after the other: each waits for
 * the bodies already running for its keys there. The database cannot order them (it sees one
 * holder, and its locks are re-entrant per connection). A nested call (its frame holds the key)
 * is re-entry and never waits for its own outer body. Registered before the first await, so two
 * siblings never both see the key as free. `memo`: the transaction's, or the connection's.
 */
function afterSiblings(plan: Plan, memo: Map<string, unknown>): SiblingTurn {
  const frame = currentFrame();
  const ids = plan.locks.map((l) => l.id).filter((id) => !frame?.advisoryHeld?.get(heldKey(plan.inst, id))?.live.live);
  let release!: () => void;
  const mine = new Promise<void>((resolve) => (release = resolve));
  const before: Promise<void>[] = [];
  const tails: Array<[string, Promise<void>]> = [];
  for (const id of ids) {
    const slot = `ormlock.advisory.body:${id}`;
    const tail = memo.get(slot) as Promise<void> | undefined;
    if (tail) before.push(tail);
    const next = (tail ?? Promise.resolve()).then(() => mine);
    memo.set(slot, next);
    tails.push([slot, next]);
  }
  const done = () => {
    release();
    // the last in line leaves nothing to keep — once the bodies ahead (a call that gave up waiting) are done too
    for (const [slot, next] of tails) void next.then(() => memo.get(slot) === next && memo.delete(slot));
  };
  return { ready: before.length ? Promise.all(before) : undefined, done };
}

async function lockAndRun<T>(
  plan: Plan,
  tx: TxState,
  qr: QueryRunner,
  joined: boolean,
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
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
    return await runInFrame(withHeld(plan, items, 'transaction', live, qr), () => runLockedBody(lockedBody(plan, qr, items), (lockScope) => fn(context(qr, plan, items.length > 0, lockScope))));
  } catch (error) {
    if (plan.adv.isConnectionLost(error) || ((qr as { isReleased?: boolean }).isReleased && isReleasedError(error))) {
      throw lostError(plan, plan.locks, error);
    }
    throw error;
  } finally {
    live.live = false;
  }
}

async function runSessionScoped<T>(plan: Plan, fn: (ctx: AdvisoryLockContext) => Promise<T> | T): Promise<T | undefined> {
  const tx = ambientTx(plan.inst);
  const startedAt = Date.now();
  if (tx) {
    // siblings in one transaction: bodies for one key take turns (registered before the first await)
    const sibling = afterSiblings(plan, tx.memo);
    try {
      if (!(await siblingsDone(plan, sibling))) return siblingTimedOut(plan, startedAt);
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
      result = await runInFrame(withHeld(plan, items, 'session', live, conn, own ? conn : undefined), () =>
        runLockedBody(lockedBody(plan, held, items), (lockScope) => fn(context(held, plan, items.length > 0, lockScope))),
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
      if (await plan.adv.unlockSession(qr, item.id, plan.shared)) plan.inst.emit({ type: 'released', kind: kindOf(plan), target: item.key.display, heldMs: heldFor(item) });
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

// ---------------------------------------------------------------------------------------------
// public functions

/**
 * Runs `fn` while holding the advisory lock on `key` (the body starts only once the lock is
 * taken, so what it loads is fresh). `key`: string | number | bigint | an array of them (ONE
 * composite key) | `advisoryKeys(a, b, …)` (several locks, taken in one canonical order) | a
 * function returning one of these.
 *
 * ```ts
 * await withAdvisoryLock(`charge:${userId}`, async () => { … });                 // transaction scope
 * await withAdvisoryLock('nightly-report', job, { scope: 'session', timeoutMs: 0, onTimeout: 'skip' });
 * ```
 */
export function withAdvisoryLock<T>(key: AdvisoryKey | (() => AdvisoryKey), fn: (ctx: AdvisoryLockContext) => Promise<T> | T, options: AdvisoryLockSkipOptions): Promise<T | undefined>;
export function withAdvisoryLock<T>(key: AdvisoryKey | (() => AdvisoryKey), fn: (ctx: AdvisoryLockContext) => Promise<T> | T, options?: AdvisoryLockOptions): Promise<T>;
export function withAdvisoryLock<T>(
  key: AdvisoryKey | (() => AdvisoryKey),
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  options: AdvisoryLockOptions = {},
): Promise<T | undefined> {
  return runWithAdvisoryLock(key, undefined, [], fn, options, { label: 'withAdvisoryLock' });
}

/** Several distinct locks (`withAdvisoryLock(advisoryKeys(...keys), fn, options)`), taken in one canonical order. */
export function withAdvisoryLocks<T>(keys: AdvisoryKey[], fn: (ctx: AdvisoryLockContext) => Promise<T> | T, options: AdvisoryLockSkipOptions): Promise<T | undefined>;
export function withAdvisoryLocks<T>(keys: AdvisoryKey[], fn: (ctx: AdvisoryLockContext) => Promise<T> | T, options?: AdvisoryLockOptions): Promise<T>;
export async function withAdvisoryLocks<T>(
  keys: AdvisoryKey[],
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  options: AdvisoryLockOptions = {},
): Promise<T | undefined> {
  const subject = { label: 'withAdvisoryLocks' };
  if (!Array.isArray(keys)) throw configError(subject, 'the first argument must be an array of keys');
  const flat = keys.flatMap((k) => (k instanceof AdvisoryKeySet ? [...k.keys] : [k]));
  return runWithAdvisoryLock(new AdvisoryKeySet(flat as any), undefined, [], fn, options, subject);
}

/**
 * The one implementation behind `withAdvisoryLock` and `@AdvisoryLock`: evaluates the key
 * (a function gets `args`, with `thisArg` as `this`), validates everything, then takes the
 * locks in the requested scope and runs `fn`.
 */
export async function runWithAdvisoryLock<T>(
  key: unknown,
  thisArg: unknown,
  args: unknown[],
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  options: AdvisoryLockOptions | undefined,
  subject: AdvisorySubject,
): Promise<T | undefined> {
  if (typeof fn !== 'function') checkFunction(subject.label, fn, 'the body', { method: subject.method });
  const problems = advisoryOptionProblems(options);
  if (problems.length) throw configError(subject, problems.join('; '));
  const opts = options ?? {};
  const inst = resolveInstallation(subject.label, { explicit: opts.dataSource });
  const plan = makePlan(inst, evaluateAdvisoryKey(key, thisArg, args, subject), opts, subject, true);
  const run = () => (plan.scope === 'transaction' ? runTransactionScoped(plan, fn) : runSessionScoped(plan, fn));
  // a QueryRunner (or its manager) named as { dataSource }: the lock is taken on it
  return opts.dataSource === undefined ? run() : onNamedConnection(inst, opts.dataSource, subject.label, run);
}

/**
 * True when some connection (this one included) holds the advisory lock on `key` — in any
 * process. Runs on the ambient transaction's or pinned connection when there is one.
 *
 * ```ts
 * if (await advisoryLockExists('nightly-report')) return 'already running';
 * ```
 */
export async function advisoryLockExists(key: AdvisoryKey | (() => AdvisoryKey), options: AdvisoryLockExistsOptions = {}): Promise<boolean> {
  const subject = { label: 'advisoryLockExists' };
  const problems = optionsProblems(options, ['dataSource']);
  if (problems.length) throw configError(subject, problems.join('; '));
  const inst = resolveInstallation(subject.label, { explicit: options.dataSource });
  const value = evaluateAdvisoryKey(key, undefined, [], subject);
  if (value instanceof AdvisoryKeySet) throw configError(subject, 'takes one key (an array is one composite key), not advisoryKeys(...)');
  const [resolved] = resolveAdvisoryKeys(value, inst.settings.namespace, subject);
  const qr = namedConnection(inst, options.dataSource, subject.label) ?? ambientTx(inst)?.connection ?? pinnedConnection(inst);
  const run = qr ? (sql: string, p?: unknown[]) => qr.query(sql, p) : (sql: string, p?: unknown[]) => inst.port.query(sql, p);
  return inst.dialect.advisory.isLocked(run, inst.dialect.advisory.lockId(resolved));
}

/**
 * The lock id a key gets on an installed DataSource's database (PostgreSQL: the signed 64-bit
 * integer as text; MySQL/MariaDB: the GET_LOCK name), for diagnostics and tests.
 */
export function advisoryLockId(key: AdvisoryKey, options: AdvisoryLockExistsOptions = {}): string[] {
  const subject = 'advisoryLockId';
  const inst = resolveInstallation(subject, { explicit: options?.dataSource });
  return resolveAdvisoryKeys(key, inst.settings.namespace, subject).map((r) => inst.dialect.advisory.lockId(r));
}

// ---------------------------------------------------------------------------------------------
// entity writes (@AdvisoryLock on an entity class)

/** One entity-class declaration, as the advisory subscriber hands it over. */
export interface EntityAdvisoryRequest {
  readonly key: unknown;
  readonly options: AdvisoryLockOptions;
}

/**
 * Takes the entity's advisory locks on `qr` (the write's connection) in its open transaction,
 * held until that transaction ends. Keys of all declarations are taken together, in canonical
 * order. Keys this context already holds are not taken again.
 */
export async function lockForEntityWrite(
  inst: Installation,
  qr: QueryRunner,
  requests: readonly EntityAdvisoryRequest[],
  subject: AdvisorySubject,
): Promise<void> {
  if (!qr.isTransactionActive) {
    throw new TransactionRequiredError(
      `${subject.label}: the write runs outside a transaction, so its advisory lock could not be held until it commits; ` +
        `use save()/remove() (which open one), wrap the write in transaction(…), or call .useTransaction(true) on the query builder`,
      { entity: subject.entity },
    );
  }
  // Declarations with the same options are one plan, so all their keys are taken in one
  // canonical order; groups with different options are taken one after the other.
  const groups = new Map<string, { options: AdvisoryLockOptions; keys: unknown[] }>();
  for (const request of requests) {
    const group = `${request.options.shared === true}|${request.options.timeoutMs ?? ''}`;
    let entry = groups.get(group);
    if (!entry) groups.set(group, (entry = { options: request.options, keys: [] }));
    if (request.key instanceof AdvisoryKeySet) entry.keys.push(...request.key.keys);
    else entry.keys.push(request.key);
  }
  const tx = ambientTx(inst);
  const callerTx = tx?.connection === qr ? tx : undefined;
  for (const { options, keys } of groups.values()) {
    const plan = makePlan(inst, new AdvisoryKeySet(keys as any), { ...options, scope: 'transaction', onTimeout: 'throw' }, subject);
    const items = toAcquire(plan, qr);
    if (!items.length) continue;
    const startedAt = Date.now();
    // a caller's transaction stays usable if the lock times out (savepoint where needed)
    const failed = await acquireForTransaction(plan, qr, items, callerTx !== undefined);
    if (failed) throw await notObtained(plan, failed, startedAt, true);
    acquired(plan, items, startedAt);
  }
}
