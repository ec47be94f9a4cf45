import type { LockEventKind } from '../observe/events';
import type { Installation } from '../installations';
import type { IsolationLevel, PortConnection } from '../orm/port';

/**
 * The one model of what each database connection holds: whether a transaction is open on it, at
 * which isolation, its savepoint stack, and every lock ormlock took on it with the level where it
 * was taken. Every begin, commit, rollback, savepoint, rollback-to and release — ormlock's own and
 * the ORM's (the adapters route theirs here) — goes through this module, and every strategy asks
 * it "is it held here?". Nothing else keeps that state.
 *
 * Levels: `SESSION` (-1) for a lock that outlives transactions (a session advisory lock, or the
 * session lock standing in for a transaction-scoped one where the database has none), 0 for the
 * transaction itself, n > 0 for the n-th open savepoint. A rollback to savepoint n drops the locks
 * taken at level ≥ n that the database drops (`dropsAtRollbackTo`, set from the dialect's
 * capability when the lock is noted); a release merges level n into n - 1; the end of the
 * transaction drops every lock of level ≥ 0.
 */

export const SESSION = -1;

/** One lock ormlock took on a connection. */
export interface HeldLock {
  readonly inst: Installation;
  readonly kind: LockEventKind;
  /** The database's id (advisory: the dialect's lock id; row: `<entity>:<key>`). */
  readonly id: string;
  readonly shared: boolean;
  /** As the user wrote it (for events and messages). */
  readonly display: string;
  /** SESSION, 0 (transaction) or the savepoint depth where it was taken; moves down on release. */
  level: number;
  /** A rollback to a savepoint at or below `level` drops it (the database does so). */
  readonly dropsAtRollbackTo: boolean;
  /** A session lock standing in for a transaction-scoped one: released (by its owner) when the transaction ends. */
  untilTransactionEnd: boolean;
  readonly at: number;
}

/** What the model knows of one connection. */
export interface ConnectionState {
  inTransaction: boolean;
  /** The transaction's isolation when known (asked for, or the ORM's call named it). */
  isolation?: IsolationLevel;
  /** Open savepoints, the innermost last (names where known). */
  readonly savepoints: Array<string | undefined>;
  readonly locks: HeldLock[];
  /** Settings ormlock changed on this connection and must put back (see `settingOf`). */
  readonly settings: Map<string, unknown>;
  /** The unit of work that holds the connection now (see `takeTurn`), and those waiting, in call order. */
  turn?: object;
  readonly waiting: Array<{ owner: object; go: () => void }>;
  /** The driver reported the connection dead (see `died`): it never goes back to the pool. */
  dead?: boolean;
}

/** A change of a connection's state, for whoever wants to follow it (commit hooks, propagation, the lock signal). */
export type ConnectionEvent =
  | { type: 'begin'; isolation?: IsolationLevel }
  | { type: 'commit' | 'rollback'; dropped: readonly HeldLock[] }
  | { type: 'savepoint'; depth: number; name?: string }
  | { type: 'rollbackTo'; depth: number; name?: string; dropped: readonly HeldLock[] }
  | { type: 'release'; depth: number; name?: string }
  | { type: 'discarded'; reason: string; locks: readonly HeldLock[] };

export type ConnectionListener = (connection: object, event: ConnectionEvent) => void;

/**
 * Test-only switches that break the model on purpose, so the model-based tests can prove they
 * catch a broken model. Never set outside tests.
 */
export const modelFaults = { forgetSavepointDrop: false };

const states = new WeakMap<object, ConnectionState>();
const listeners = new Set<ConnectionListener>();

/** The physical connection a port connection stands for (MikroORM savepoint wrappers share their root's). */
export function physical(connection: PortConnection | object): object {
  return (connection as { physical?: object }).physical ?? connection;
}

/** The state of `connection` (created empty on first use). */
export function stateOf(connection: PortConnection | object): ConnectionState {
  const key = physical(connection);
  let state = states.get(key);
  if (!state) states.set(key, (state = { inTransaction: false, savepoints: [], locks: [], settings: new Map(), waiting: [] }));
  return state;
}

/** The state if the model has seen the connection, without creating one. */
export function knownState(connection: PortConnection | object): ConnectionState | undefined {
  return states.get(physical(connection));
}

/** Follows every connection's changes; returns the undo. Listeners must not throw (errors are swallowed). */
export function onConnectionEvent(listener: ConnectionListener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function publish(connection: object, event: ConnectionEvent): void {
  for (const l of listeners) {
    try {
      l(physical(connection), event);
    } catch {
      // a listener never breaks the connection's bookkeeping
    }
  }
}

// ---------------------------------------------------------------------------------------------
// transactions and savepoints

/** A transaction began on `connection`. */
export function began(connection: object, isolation?: IsolationLevel): void {
  const s = stateOf(connection);
  s.inTransaction = true;
  s.isolation = isolation;
  s.savepoints.length = 0;
  publish(connection, { type: 'begin', isolation });
}

/**
 * The transaction on `connection` ended (COMMIT or ROLLBACK): the locks of level ≥ 0 end with it
 * (observers hear `released`, except for the stand-ins `untilTransactionEnd`, whose owner releases
 * them and reports). Resolves the locks that ended, stand-ins included.
 */
export function ended(connection: object, how: 'commit' | 'rollback'): HeldLock[] {
  const s = stateOf(connection);
  s.inTransaction = false;
  s.isolation = undefined;
  s.savepoints.length = 0;
  if (s.settings.size) s.settings.clear(); // SET LOCAL values end with the transaction
  if (!s.locks.length) {
    // nothing held (the common case): no lists to build
    publish(connection, { type: how, dropped: NONE });
    return [];
  }
  const dropped = s.locks.filter((l) => l.level >= 0);
  take(s, (l) => l.level >= 0 && !l.untilTransactionEnd); // stand-ins stay until their owner released them
  reportReleased(dropped.filter((l) => !l.untilTransactionEnd));
  publish(connection, { type: how, dropped });
  return dropped;
}

/**
 * Work to run on a connection right after its transaction ended, when some of the locks it
 * dropped are session locks standing in for transaction locks (`untilTransactionEnd`): releasing
 * them. A transaction end that dropped no stand-in runs no handler.
 */
export type EndHandler = (connection: object, ended: readonly HeldLock[]) => Promise<void> | void;
const endHandlers: EndHandler[] = [];

/** Registers work to run after every transaction end (see `finishTransaction`). */
export function onTransactionEnd(handler: EndHandler): void {
  if (!endHandlers.includes(handler)) endHandlers.push(handler);
}

/**
 * The transaction on `connection` ended (`ended`), then the end handlers run on it, before anything
 * else may use it (before it goes back to the pool). The first handler failure is thrown after all ran.
 */
export function finishTransaction(connection: object, how: 'commit' | 'rollback'): Promise<void> | undefined {
  const dropped = ended(connection, how);
  // no promise unless a stand-in ended (transaction locks end with the transaction on their own)
  return hasStandIn(dropped) ? runEndHandlers(connection, dropped) : undefined;
}

function hasStandIn(locks: readonly HeldLock[]): boolean {
  for (const l of locks) if (l.untilTransactionEnd) return true;
  return false;
}

const NONE: readonly HeldLock[] = Object.freeze([]);

/** Runs the end handlers for `locks` (stand-ins still held outside a transaction, or those a transaction end dropped). */
export async function runEndHandlers(connection: object, locks: readonly HeldLock[]): Promise<void> {
  if (!locks.length) return;
  let failure: unknown;
  for (const handler of endHandlers) {
    try {
      await handler(connection, locks);
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure) throw failure;
}

/** The session locks standing in for transaction locks still held on `connection` outside a transaction (their release is due). */
export function dueStandIns(connection: object): HeldLock[] {
  const s = knownState(connection);
  return s && !s.inTransaction ? s.locks.filter((l) => l.untilTransactionEnd) : [];
}

/** A savepoint was opened on `connection`; resolves its depth (1 for the first). */
export function savepointOpened(connection: object, name?: string): number {
  const s = stateOf(connection);
  s.savepoints.push(name);
  publish(connection, { type: 'savepoint', depth: s.savepoints.length, name });
  return s.savepoints.length;
}

/** Rolled back to (and out of) the innermost savepoint, or the one named: drops what the database dropped. */
export function rolledBackTo(connection: object, name?: string): HeldLock[] {
  const s = stateOf(connection);
  const depth = depthOf(s, name);
  if (depth === 0) return [];
  s.savepoints.length = depth - 1;
  const dropped = modelFaults.forgetSavepointDrop ? [] : take(s, (l) => l.level >= depth && l.dropsAtRollbackTo);
  for (const l of s.locks) if (l.level >= depth) l.level = depth - 1; // kept: now belongs to the level below
  reportReleased(dropped);
  publish(connection, { type: 'rollbackTo', depth, name, dropped });
  return dropped;
}

/** Released the innermost savepoint (or the one named): its locks belong to the level below. */
export function savepointReleased(connection: object, name?: string): void {
  const s = stateOf(connection);
  const depth = depthOf(s, name);
  if (depth === 0) return;
  s.savepoints.length = depth - 1;
  for (const l of s.locks) if (l.level >= depth) l.level = depth - 1;
  publish(connection, { type: 'release', depth, name });
}

function depthOf(s: ConnectionState, name: string | undefined): number {
  if (name === undefined) return s.savepoints.length;
  return s.savepoints.lastIndexOf(name) + 1;
}

function take(s: ConnectionState, pick: (l: HeldLock) => boolean): HeldLock[] {
  const dropped = s.locks.filter(pick);
  if (dropped.length) {
    const kept = s.locks.filter((l) => !pick(l));
    s.locks.length = 0;
    s.locks.push(...kept);
  }
  return dropped;
}

function reportReleased(locks: readonly HeldLock[]): void {
  const now = Date.now();
  for (const l of locks) l.inst.emit({ type: 'released', kind: l.kind, target: l.display, heldMs: now - l.at });
}

// ---------------------------------------------------------------------------------------------
// locks

/** The level a lock taken now on `connection` gets: the innermost savepoint, the transaction, or SESSION. */
export function currentLevel(connection: object): number {
  const s = stateOf(connection);
  return s.inTransaction ? s.savepoints.length : SESSION;
}

/**
 * Notes a lock ormlock took on `connection`. `scope`: 'transaction' (ends with the transaction,
 * dropped by a rollback to a savepoint taken before it when `dropsAtRollbackTo`), 'session' (held
 * until released), 'until-end' (a session lock standing in for a transaction-scoped one).
 */
export function noteLock(
  connection: object,
  lock: { inst: Installation; kind: LockEventKind; id: string; shared?: boolean; display: string },
  scope: 'transaction' | 'session' | 'until-end',
  dropsAtRollbackTo = false,
): HeldLock {
  const s = stateOf(connection);
  const level = s.inTransaction ? s.savepoints.length : SESSION; // currentLevel, read once
  const held: HeldLock = {
    inst: lock.inst,
    kind: lock.kind,
    id: lock.id,
    shared: lock.shared === true,
    display: lock.display,
    level: scope === 'transaction' ? level : scope === 'until-end' ? Math.max(0, level) : SESSION,
    dropsAtRollbackTo: scope === 'transaction' && dropsAtRollbackTo,
    untilTransactionEnd: scope === 'until-end',
    at: Date.now(),
  };
  s.locks.push(held);
  return held;
}

/** Forgets one lock (a session lock released on its connection). */
export function forgetLock(connection: object, held: HeldLock): void {
  const s = knownState(connection);
  const i = s ? s.locks.indexOf(held) : -1;
  if (i >= 0) s!.locks.splice(i, 1);
}

/** The lock of `kind` and `id` held on `connection`, if the model has it (exclusive first). */
export function heldHere(connection: object, kind: LockEventKind, id: string): HeldLock | undefined {
  const s = knownState(connection);
  if (!s) return undefined;
  let found: HeldLock | undefined;
  for (const l of s.locks) if (l.kind === kind && l.id === id && (!found || found.shared)) found = l;
  return found;
}

/** Every lock the model has on `connection` (a copy). */
export function locksOn(connection: object): HeldLock[] {
  return [...(knownState(connection)?.locks ?? [])];
}

/** True when `connection` may go back to the pool: alive, no transaction open, no lock ormlock took still held. */
export function poolable(connection: object): boolean {
  const s = knownState(connection);
  return !s || (!s.inTransaction && s.locks.length === 0 && !s.dead);
}

/** Why `connection` may not go back to the pool, or undefined when it may. */
export function notPoolableReason(connection: object): string | undefined {
  const s = knownState(connection);
  if (!s || poolable(connection)) return undefined;
  const parts: string[] = [];
  if (s.dead) parts.push('the connection died');
  if (s.inTransaction) parts.push('a transaction is still open on it');
  if (s.locks.length) parts.push(`it still holds ${s.locks.map((l) => `${l.kind} lock ${l.display}`).join(', ')}`);
  return parts.join(' and ');
}

/**
 * The connection is being destroyed instead of pooled (it failed `poolable`): the model forgets it,
 * observers hear `lost` for each lock it still held, and the event is published.
 */
export function discarded(connection: object, reason: string): void {
  const s = knownState(connection);
  const locks = s ? [...s.locks] : [];
  if (s) {
    forget(s);
    s.dead = false; // gone for good
  }
  const now = Date.now();
  for (const l of locks) l.inst.emit({ type: 'lost', kind: l.kind, target: l.display, heldMs: now - l.at });
  publish(connection, { type: 'discarded', reason, locks });
}

/**
 * The driver reported `connection` dead (its server process killed, the socket closed): the server
 * ended its transaction and freed its locks, so the model forgets them at once — a second worker
 * may already hold them. The lock scopes on it report the loss (`lost` events, LockLostError); the
 * connection stays marked dead, so it is destroyed, never pooled (`poolable`), and `discarded`
 * forgets it for good.
 */
export function died(connection: object, reason: string): void {
  const s = stateOf(connection);
  if (s.dead) return;
  const locks = [...s.locks];
  forget(s);
  s.dead = true;
  publish(connection, { type: 'discarded', reason, locks });
}

function forget(s: ConnectionState): void {
  s.locks.length = 0;
  s.inTransaction = false;
  s.isolation = undefined;
  s.savepoints.length = 0;
  s.settings.clear();
}

// ---------------------------------------------------------------------------------------------
// settings

/** A value ormlock remembers for a connection until its transaction ends (e.g. the lock_timeout in force before it changed it). */
export function settingOf(connection: object): Map<string, unknown> {
  return stateOf(connection).settings;
}

// ---------------------------------------------------------------------------------------------
// one unit of work at a time

/**
 * Queues `owner` for `connection`: `ready` settles when it holds the connection (in call order);
 * `giveUp` hands the connection to the next in line (or leaves the queue, when still waiting).
 * Concurrent units of work on one pinned connection run one after another, never interleaved.
 */
export function takeTurn(connection: object, owner: object): { ready: Promise<void>; giveUp: () => void } {
  const s = stateOf(connection);
  const giveUp = () => {
    if (s.turn !== owner) {
      const i = s.waiting.findIndex((w) => w.owner === owner);
      if (i >= 0) s.waiting.splice(i, 1);
      return;
    }
    const next = s.waiting.shift();
    s.turn = next?.owner;
    next?.go();
  };
  if (s.turn === undefined) {
    s.turn = owner;
    return { ready: Promise.resolve(), giveUp };
  }
  return { ready: new Promise<void>((resolve) => s.waiting.push({ owner, go: resolve })), giveUp };
}

/** The unit of work holding `connection` now, if any. */
export function turnOf(connection: object): object | undefined {
  return knownState(connection)?.turn;
}
