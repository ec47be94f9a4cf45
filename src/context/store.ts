import { AsyncLocalStorage } from 'node:async_hooks';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import type { IsolationLevel } from '../isolation-level';
import type { LockDialect } from '../dialects/dialect';
import type { RowLockOptions } from '../locks/row-lock-options';

/** One open transaction, as the context carries it. */
export interface TxState {
  readonly id: number;
  readonly dataSource: DataSource;
  readonly queryRunner: QueryRunner;
  readonly manager: EntityManager;
  readonly dialect: LockDialect;
  readonly isolation?: IsolationLevel;
  /** Advisory keys held in this transaction (re-entry is a no-op). */
  readonly heldKeys: Set<string>;
  /** What dialects remember for the rest of this transaction (e.g. a lock_timeout they set). */
  readonly memo: Map<string, unknown>;
}

/** Locked reads requested by a `@Pessimistic` method (or `withPessimistic`). */
export interface ReadLockPolicy {
  options: RowLockOptions;
  /** Only reads of these entity classes are locked; all when undefined. */
  entities?: ReadonlyArray<Function>;
  /** Where the policy was declared, for error messages. */
  source: string;
}

/**
 * What the AsyncLocalStorage carries: the Node form of Ruby's `Thread.current`.
 * Frames are immutable; a nested scope gets a new frame that shares the parent's
 * `values` map unless `Current.run` gives it a fresh one.
 */
export interface Frame {
  readonly txs: ReadonlyMap<DataSource, TxState>;
  readonly values: Map<PropertyKey, unknown>;
  readonly readLock?: ReadLockPolicy;
  /** Session-scoped held locks (advisory) outside of a transaction, keyed by lock id. */
  readonly sessionLocks?: Map<string, unknown>;
  /**
   * Advisory locks held by this async context (either scope), keyed by
   * `<DataSource number>|<dialect lock id>`: a nested call for one of them is a no-op.
   */
  readonly advisoryHeld?: ReadonlyMap<string, HeldAdvisoryLock>;
  /**
   * Connections pinned by session-scoped advisory locks, per DataSource: lock calls nested in
   * one use it instead of taking a second pool connection.
   */
  readonly pinned?: ReadonlyMap<DataSource, QueryRunner>;
}

/** One advisory lock held by an async context (see `Frame.advisoryHeld`). */
export interface HeldAdvisoryLock {
  readonly scope: 'transaction' | 'session';
  readonly shared: boolean;
  /** The key as the user gave it (for messages). */
  readonly display: string;
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
    sessionLocks: parent?.sessionLocks,
    advisoryHeld: parent?.advisoryHeld,
    pinned: parent?.pinned,
    ...patch,
  };
}

/** The transaction open on `dataSource` in this async context, if any. */
export function ambientTx(dataSource: DataSource): TxState | undefined {
  return storage.getStore()?.txs.get(dataSource);
}

/** The connection pinned by a session-scoped lock on `dataSource` in this async context, if any. */
export function pinnedRunner(dataSource: DataSource): QueryRunner | undefined {
  return storage.getStore()?.pinned?.get(dataSource);
}

/**
 * The connection that TypeORM calls in this async context should use: the ambient
 * transaction's, else the one pinned by a session lock (so a session-lock body needs no
 * second pool connection), else none (TypeORM's default pool behaviour).
 */
export function ambientRunner(dataSource: DataSource): { manager: EntityManager; queryRunner: QueryRunner } | undefined {
  const frame = storage.getStore();
  if (!frame) return undefined;
  const tx = frame.txs.get(dataSource);
  if (tx) return tx;
  const pinned = frame.pinned?.get(dataSource);
  return pinned ? { manager: pinned.manager, queryRunner: pinned } : undefined;
}
