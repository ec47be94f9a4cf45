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

function makePlan(inst: Installation, key: unknown, options: AdvisoryLockOptions, subject: AdvisorySubject): Plan {
  const problems = advisoryOptionProblems(options);
  if (problems.length) throw configError(subject, problems.join('; '));
  checkAdvisoryOptionsFor(inst.dialect, options, subject);
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

// ---------------------------------------------------------------------------------------------
// what this async context (and each connection's open transaction) holds

function heldKey(inst: Installation, id: string): string {
  return `${inst.id}|${id}`;
}
const txHeldKey = (id: string, shared: boolean) => `advisory:${shared ? 's' : 'x'}:${id}`;

/** Transaction-scoped locks held by the open transaction of each connection (cleared when it ends). */
const runnerHeld = new WeakMap<QueryRunner, Map<string, { shared: boolean; display: string; inst: Installation; at: number; kind: 'advisory' | 'tree' }>>();
/** Session locks to release when the connection's transaction ends (MySQL transaction scope; unlocks refused by an aborted PostgreSQL transaction). */
const afterEnd = new WeakMap<QueryRunner, Array<{ plan: Plan; item: LockItem; shared: boolean }>>();

function heldBy(plan: Plan, item: LockItem, qr: QueryRunner | undefined): { shared: boolean } | undefined {
  const frameHeld = currentFrame()?.advisoryHeld?.get(heldKey(plan.inst, item.id));
  if (frameHeld && frameHeld.live.live) return { shared: frameHeld.shared };
  const tx = ambientTx(plan.inst);
  if (tx?.heldKeys.has(txHeldKey(item.id, false))) return { shared: false };
  const onRunner = qr ? runnerHeld.get(qr)?.get(item.id) : undefined;
  if (onRunner !== undefined) return { shared: onRunner.shared };
  if (tx?.heldKeys.has(txHeldKey(item.id, true))) return { shared: true };
  return undefined;
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

function withHeld(plan: Plan, items: readonly LockItem[], scope: AdvisoryScope, live: Scope, pinned?: QueryRunner) {
  const frame = currentFrame();
  const advisoryHeld = new Map(frame?.advisoryHeld ?? []);
  for (const item of items) {
    advisoryHeld.set(heldKey(plan.inst, item.id), { scope, shared: plan.shared, display: item.key.display, live });
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
): Promise<LockItem | undefined> {
  const { adv, timeoutMs } = plan;
  const savepoint = protect && adv.failedStatementAbortsTransaction && timeoutMs !== undefined && (timeoutMs > 0 || items.length > 1);
  const taken: LockItem[] = [];
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const releaseTaken = async () => {
    if (kind !== 'session') return; // transaction locks end with the savepoint or the transaction
    for (const item of [...taken].reverse()) await adv.unlockSession(qr, item.id, plan.shared).catch(() => undefined);
  };
  const takeAll = async () => {
    for (const item of items) {
      const remaining = deadline === undefined ? undefined : Math.max(0, deadline - Date.now());
      const got = kind === 'transaction'
        ? await adv.lockForTransaction!(qr, item.id, plan.shared, remaining, item.key)
        : await adv.lockForSession(qr, item.id, plan.shared, remaining, item.key);
      if (!got) throw new NotObtained(item);
      taken.push(item);
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
async function acquireForTransaction(plan: Plan, qr: QueryRunner, tx: TxState | undefined, items: readonly LockItem[], protect: boolean) {
  const native = plan.dialect.capabilities.transactionAdvisoryLocks && typeof plan.adv.lockForTransaction === 'function';
  const failed = await acquireAll(plan, qr, items, native ? 'transaction' : 'session', protect);
  if (failed) return failed;
  let held = runnerHeld.get(qr);
  if (!held) runnerHeld.set(qr, (held = new Map()));
  for (const item of items) {
    held.set(item.id, { shared: plan.shared, display: item.key.display, inst: plan.inst, at: Date.now(), kind: kindOf(plan) });
    if (tx?.connection === qr) tx.heldKeys.add(txHeldKey(item.id, plan.shared));
    if (!native) releaseWhenTransactionEnds(qr, { plan, item, shared: plan.shared });
  }
  return undefined;
}

const GUARDED = Symbol('ormlock.advisoryReleaseGuard');

/**
 * Queues a session lock to be released, on `qr`, right after its transaction ends. As a safety
 * net, `qr.release()` of that QueryRunner first releases whatever is still queued (a
 * transaction ended without TypeORM's commit/rollback events), so no lock ever goes back into
 * the pool with its connection.
 */
function releaseWhenTransactionEnds(qr: QueryRunner, entry: { plan: Plan; item: LockItem; shared: boolean }): void {
  let list = afterEnd.get(qr);
  if (!list) afterEnd.set(qr, (list = []));
  list.push(entry);
  const guarded = qr as QueryRunner & { [GUARDED]?: true; release?: () => Promise<void> };
  if (guarded[GUARDED]) return;
  guarded[GUARDED] = true;
  const baseRelease = guarded.release;
  if (typeof baseRelease !== 'function') return; // the adapter releases through releaseQueued itself
  guarded.release = async function (this: QueryRunner) {
    if (afterEnd.get(qr)?.length && !(qr as { isReleased?: boolean }).isReleased) {
      await releaseQueued(qr).catch(() => undefined);
    }
    return baseRelease.call(this);
  };
}

/**
 * Called when a transaction on `qr` has ended (the advisory subscriber's afterTransactionCommit
 * and afterTransactionRollback): releases the session locks that stood in for transaction
 * locks, on the same connection. A lock that was no longer held is a LockLostError.
 */
export function afterAdvisoryTransactionEnd(qr: QueryRunner): Promise<void> | undefined {
  if (qr.isTransactionActive) return undefined; // a savepoint ended, not the transaction
  if (!runnerHeld.has(qr) && !afterEnd.has(qr)) return undefined; // nothing to do: no promise for TypeORM to await
  const held = runnerHeld.get(qr);
  runnerHeld.delete(qr);
  const queued = new Set((afterEnd.get(qr) ?? []).map((e) => e.item.id));
  // transaction-scoped locks of the database itself ended with the transaction
  const now = Date.now();
  for (const [id, { display, inst, at, kind }] of held ?? []) if (!queued.has(id)) inst.emit({ type: 'released', kind, target: display, heldMs: now - at });
  return releaseQueued(qr);
}

async function releaseQueued(qr: QueryRunner): Promise<void> {
  const list = afterEnd.get(qr);
  if (!list?.length) return;
  afterEnd.delete(qr);
  const lost: Array<{ plan: Plan; item: LockItem; cause?: unknown }> = [];
  for (const { plan, item, shared } of [...list].reverse()) {
    try {
      if (await plan.adv.unlockSession(qr, item.id, shared)) plan.inst.emit({ type: 'released', kind: kindOf(plan), target: item.key.display, heldMs: heldFor(item) });
      else lost.push({ plan, item });
    } catch (error) {
      lost.push({ plan, item, cause: error });
    }
  }
  if (lost.length) throw lostError(lost[0].plan, lost.map((l) => l.item), lost[0].cause);
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
  const sibling = await afterSiblings(plan, tx.memo);
  try {
    return await lockAndRun(plan, tx, qr, joined, fn);
  } finally {
    sibling.done();
  }
}

/**
 * Sibling calls on one connection (`Promise.all` of two calls for one key inside one transaction
 * or one session lock's pinned connection) run their bodies one after the other: each waits for
 * the bodies already running for its keys there. The database cannot order them (it sees one
 * holder, and its locks are re-entrant per connection). A nested call (its frame holds the key)
 * is re-entry and never waits for its own outer body. Registered before the first await, so two
 * siblings never both see the key as free. `memo`: the transaction's, or the connection's.
 */
function afterSiblings(plan: Plan, memo: Map<string, unknown>): Promise<{ done: () => void }> {
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
    for (const [slot, next] of tails) if (memo.get(slot) === next) memo.delete(slot); // the last in line: nothing to keep
  };
  return before.length ? Promise.all(before).then(() => ({ done })) : Promise.resolve({ done });
}

/** Sibling bookkeeping of connections shared outside a transaction (a session lock's pinned one). */
const connectionSiblings = new WeakMap<QueryRunner, Map<string, unknown>>();

function siblingMemo(qr: QueryRunner, tx: TxState | undefined): Map<string, unknown> {
  if (tx?.connection === qr) return tx.memo;
  let memo = connectionSiblings.get(qr);
  if (!memo) connectionSiblings.set(qr, (memo = new Map()));
  return memo;
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
    const failed = await acquireForTransaction(plan, qr, tx, items, joined);
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
    return await runInFrame(withHeld(plan, items, 'transaction', live), () => runLockedBody(lockedBody(plan, qr, items), (lockScope) => fn(context(qr, plan, items.length > 0, lockScope))));
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
  const shared = tx?.connection ?? pinnedConnection(plan.inst);
  // siblings on a shared connection take turns (registered before the first await)
  const turn = shared ? afterSiblings(plan, siblingMemo(shared, tx)) : undefined;
  const sibling = turn ? await turn : undefined;
  try {
    return await runSessionOn(plan, tx, shared, fn);
  } finally {
    sibling?.done();
  }
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
  try {
    const startedAt = Date.now();
    if (items.length) {
      const failed = await acquireAll(plan, conn, items, 'session', tx !== undefined);
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
      result = await runInFrame(withHeld(plan, items, 'session', live, own ? conn : undefined), () =>
        runLockedBody(lockedBody(plan, held, items), (lockScope) => fn(context(held, plan, items.length > 0, lockScope))),
      );
    } catch (error) {
      failed = true;
      bodyError = error;
    }
    live.live = false;
    const lost = await releaseSession(plan, conn, items, tx);
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
async function releaseSession(plan: Plan, qr: QueryRunner, items: readonly LockItem[], tx: TxState | undefined): Promise<LockItem[]> {
  const lost: LockItem[] = [];
  for (const item of [...items].reverse()) {
    if ((qr as { isReleased?: boolean }).isReleased) {
      lost.push(item);
      continue;
    }
    try {
      if (await plan.adv.unlockSession(qr, item.id, plan.shared)) plan.inst.emit({ type: 'released', kind: kindOf(plan), target: item.key.display, heldMs: heldFor(item) });
      else lost.push(item);
    } catch (error) {
      if (tx && tx.connection === qr && qr.isTransactionActive && plan.adv.isAbortedTransaction(error)) {
        // The body's failure aborted the caller's transaction, which refuses every statement
        // until it ends: release right after it ends, on this connection.
        releaseWhenTransactionEnds(qr, { plan, item, shared: plan.shared });
        continue;
      }
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
  const plan = makePlan(inst, evaluateAdvisoryKey(key, thisArg, args, subject), opts, subject);
  // a QueryRunner (or its manager) named as { dataSource }: the lock is taken on it
  return onNamedConnection(inst, opts.dataSource, subject.label, () => (plan.scope === 'transaction' ? runTransactionScoped(plan, fn) : runSessionScoped(plan, fn)));
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
    const failed = await acquireForTransaction(plan, qr, callerTx, items, callerTx !== undefined);
    if (failed) throw await notObtained(plan, failed, startedAt, true);
    acquired(plan, items, startedAt);
  }
}
