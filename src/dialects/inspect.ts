import type { RunQuery } from './run-query';

/**
 * One wait, now: who waits, who blocks it, and on what.
 * `pid` is the database's connection id: the PostgreSQL backend pid, the MySQL/MariaDB
 * `CONNECTION_ID()`. A waiter blocked by several connections gives one row per blocker.
 */
export interface LockWait {
  waiting: { pid: number; query: string | null; waitedMs: number };
  /** `waiting`: the blocker itself waits for a lock (PostgreSQL also names waiters queued ahead as blockers). */
  blocking: { pid: number; query: string | null; state: string | null; waiting: boolean };
  lock: {
    kind: 'row' | 'advisory' | 'other';
    /** The table of a row lock (or of another table-level lock). */
    table?: string;
    /** An advisory key ormlock took, as the user wrote it (read from the lock statement's comment). */
    key?: string;
    /** The ormlock namespace the key was taken under, when not empty. */
    namespace?: string;
    /** Row locks: 'write' | 'read' | 'no_key_update' | 'key_share'; advisory: 'exclusive' | 'shared'; else the database's mode. */
    mode?: string;
    /** The database's name of an advisory lock: PostgreSQL the 64-bit key, MySQL the GET_LOCK name. */
    id?: string;
  };
}

/** The database part of `inspectLocks`: reads the current waits through `run` (any connection of the database). */
export interface LockInspector {
  inspect(run: RunQuery): Promise<LockWait[]>;
}

/** Drivers return bigints and decimals as strings; ids and times are plain numbers here. */
export function num(value: unknown): number {
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

export function text(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}
