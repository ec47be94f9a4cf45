/**
 * The lock events observers receive (DESIGN.md "Observability"). Every lock that is acquired
 * is also released, with `heldMs`. Kept free of any ORM or OpenTelemetry import.
 */
export type LockEventType = 'acquired' | 'released' | 'timeout' | 'not_available' | 'lost';
export type LockEventKind = 'row' | 'advisory' | 'parent' | 'tree' | 'lease';
/** The database family an event happened on (OpenTelemetry `db.system.name` values). */
export type LockEventDb = 'postgresql' | 'mysql' | 'mariadb';

export interface LockEvent {
  type: LockEventType;
  kind: LockEventKind;
  /** Entity name or lock key, for people to read. */
  target: string;
  /** How long the caller waited for the lock (acquired, timeout, not_available). */
  waitedMs?: number;
  /** How long the lock was held (released). */
  heldMs?: number;
  db?: LockEventDb;
}

/** Receives lock events; it must not throw (and if it does, locking goes on regardless). */
export interface LockObserver {
  onLockEvent(event: LockEvent): void;
}
