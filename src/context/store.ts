import { AsyncLocalStorage } from 'node:async_hooks';
import type { LockDialect } from '../dialects/dialect';
import type { RowLockOptions } from '../locks/row-lock-options';
import type { Installation } from '../installations/installation';
import type { IsolationLevel, PortConnection } from '../orm/port';
import type { LockScope } from './scope';

/** One open transaction, as the context carries it. */
export interface TxState {
  readonly id: number;
  readonly inst: Installation;
  readonly connection: PortConnection;
  /** The ORM's manager on that connection (what user code inside gets). */
  readonly manager: any;
  readonly dialect: LockDialect;
  readonly isolation?: IsolationLevel;
  /** What dialects remember for the rest of this transaction (e.g. a lock_timeout they set). */
  readonly memo: Map<string, unknown>;
  /**
   * The scope that opened the transaction is still running. Work that outlives it (a timer
   * scheduled inside) sees `false` and runs as outside: it never uses the finished transaction.
   */
  readonly scope: Scope;
}

/** Whether a scope (a transaction, a held lock, a pinned connection) is still running. */
export interface Scope {
  live: boolean;
}

/** Locked reads requested by a `@Pessimistic` method (or `withPessimistic`). */
export interface ReadLockPolicy {
  options: RowLockOptions;
  /** Only reads of these entity classes are locked; all when undefined. */
  entities?: ReadonlyArray<Function>;
  /** Where the policy was declared, for error messages. */
  source: string;
  /** The installation whose transaction the policy's reads must go to. */
  inst: Installation;
  readonly scope: Scope;
}

/** A connection pinned by a session-scoped lock. */
export interface PinnedConnection {
  readonly connection: PortConnection;
  readonly scope: Scope;
}

/**
 * What the AsyncLocalStorage carries: the Node form of Ruby's `Thread.current`.
 * Frames are immutable; a nested scope gets a new frame that shares the parent's
 * `values` map unless `Current.run` gives it a fresh one.
 */
export interface Frame {
  /** Open transactions by installation, the innermost last. */
  readonly txs: ReadonlyMap<Installation, TxState>;
  readonly values: Map<PropertyKey, unknown>;
  readonly readLock?: ReadLockPolicy;
  /**
   * Advisory locks held by this async context (either scope), keyed by
   * `<installation id>|<dialect lock id>`: a nested call for one of them is a no-op.
   */
  readonly advisoryHeld?: ReadonlyMap<string, HeldAdvisoryLock>;
  /** Connections pinned by session-scoped advisory locks, per installation. */
  readonly pinned?: ReadonlyMap<Installation, PinnedConnection>;
  /** The innermost lock scope, whose signal `currentLockSignal()` gives (see src/context/lock-signal.ts). */
  readonly lockScope?: LockScope;
  /** Per connection, the unit of work whose turn this async context runs in (see src/context/turns.ts). */
  readonly turns?: ReadonlyMap<object, object>;
}

/** One advisory lock held by an async context (see `Frame.advisoryHeld`). */
export interface HeldAdvisoryLock {
  readonly scope: 'transaction' | 'session';
  readonly shared: boolean;
  /** The key as the user gave it (for messages). */
  readonly display: string;
  /** False once the call that took it has returned. */
  readonly live: Scope;
  /** The connection it is held on (the connection model says whether it still is). */
  readonly connection?: object;
}

const storage = new AsyncLocalStorage<Frame>();

export function currentFrame(): Frame | undefined {
  return storage.getStore();
}

export function runInFrame<T>(frame: Frame, fn: () => T): T {
  return storage.run(frame, fn);
}

/** A child frame of the current one with some fields replaced. */
export function childFrame(patch: Partial<Frame>): Frame {
  const parent = storage.getStore();
  return {
    txs: parent?.txs ?? new Map(),
    values: parent?.values ?? new Map(),
    readLock: parent?.readLock,
    advisoryHeld: parent?.advisoryHeld,
    pinned: parent?.pinned,
    lockScope: parent?.lockScope,
    turns: parent?.turns,
    ...patch,
  };
}

/**
 * The frame of a lock scope's body: a child of `parent` with `lockScope` and the fields of `patch`
 * (as `childFrame({ ...patch, lockScope })`, in one object).
 */
export function lockScopeFrame(parent: Frame | undefined, patch: Partial<Frame> | undefined, lockScope: LockScope): Frame {
  const frame = {
    txs: parent?.txs ?? new Map(),
    values: parent?.values ?? new Map(),
    readLock: parent?.readLock,
    advisoryHeld: parent?.advisoryHeld,
    pinned: parent?.pinned,
    lockScope,
    turns: parent?.turns,
  };
  if (patch) {
    Object.assign(frame, patch);
    frame.lockScope = lockScope;
  }
  return frame;
}

/** The open transactions of a frame whose scope still runs, the innermost last. */
export function liveTxs(frame: Frame | undefined): TxState[] {
  if (!frame) return [];
  return [...frame.txs.values()].filter((tx) => tx.scope.live);
}

/**
 * A body whose lock was lost (its scope's signal aborted) reaches the database no more: every
 * ormlock call, and every ORM call ormlock routes, throws the signal's LockLostError instead of
 * falling back to another pool connection once the lock's connection is gone.
 */
export function throwIfLockLost(): void {
  const scope = storage.getStore()?.lockScope;
  if (scope?.aborted) throw scope.reason;
}

/** The transaction open on `inst` in this async context, if any (and if its scope still runs). */
export function ambientTx(inst: Installation): TxState | undefined {
  throwIfLockLost();
  const tx = storage.getStore()?.txs.get(inst);
  return tx && tx.scope.live ? tx : undefined;
}

/** The connection pinned by a session-scoped lock on `inst` in this async context, if any. */
export function pinnedConnection(inst: Installation): PortConnection | undefined {
  throwIfLockLost();
  const pinned = storage.getStore()?.pinned?.get(inst);
  return pinned && pinned.scope.live ? pinned.connection : undefined;
}

/**
 * The connection that ORM calls in this async context should use: the ambient transaction's,
 * else the one pinned by a session lock (so a session-lock body needs no second pool
 * connection), else none (the ORM's default pool behaviour).
 */
export function ambientConnection(inst: Installation): PortConnection | undefined {
  return ambientTx(inst)?.connection ?? pinnedConnection(inst);
}

/** The `@Pessimistic` read policy in force (its scope still running), if any. */
export function readLockPolicy(): ReadLockPolicy | undefined {
  const policy = storage.getStore()?.readLock;
  return policy && policy.scope.live ? policy : undefined;
}
