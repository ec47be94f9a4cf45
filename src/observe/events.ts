/**
 * Lock events and observers. Observers belong to an installation (or to a Redlock): each
 * installation emits to its own list, so two installations never see each other's events.
 */

export type LockEventType = 'acquired' | 'released' | 'timeout' | 'not_available' | 'lost' | 'hook_failed';
/** `transaction`: a commit hook's event (`hook_failed`); `scheduled`: a scheduled job's lock. */
export type LockEventKind = 'row' | 'advisory' | 'parent' | 'tree' | 'lease' | 'transaction' | 'scheduled';
/** The database an event happened on (OpenTelemetry `db.system.name` values). */
export type LockEventDb = 'postgresql' | 'mysql' | 'mariadb';

/** What happened to a lock. Every lock that is `acquired` is also `released` (with `heldMs`). */
export interface LockEvent {
  type: LockEventType;
  /** What was locked: a row, an advisory key, a parent row (lockParent), a tree, a Redis lease. */
  kind: LockEventKind;
  /** Entity name or lock key, as the application wrote it. */
  target: string;
  /** How long the caller waited for the lock (acquired, timeout, not_available). */
  waitedMs?: number;
  /** How long the lock was held (released, lost). */
  heldMs?: number;
  /** The database (absent for leases). */
  db?: LockEventDb;
  /** What a commit hook threw (`hook_failed`). */
  error?: unknown;
}

/** Receives lock events. Errors it throws are swallowed: an observer never breaks locking. */
export interface LockObserver {
  onLockEvent(event: LockEvent): void;
}

/** Sends `event` to each observer, ignoring what they throw. */
export function emitTo(observers: readonly LockObserver[], event: LockEvent): void {
  for (const observer of observers) {
    try {
      observer.onLockEvent(event);
    } catch {
      /* an observer must never break locking */
    }
  }
}

/** The observers of an options object: `observers` plus the `onLockEvent` shorthand; LockConfigError-free checks are the caller's. */
export function observersOf(options: { observers?: readonly LockObserver[]; onLockEvent?: (event: LockEvent) => void }): LockObserver[] {
  const list = [...(options.observers ?? [])];
  if (options.onLockEvent) list.push({ onLockEvent: options.onLockEvent });
  return list;
}

/** Problems with `observers` / `onLockEvent` options (empty when fine). */
export function observerOptionProblems(options: { observers?: unknown; onLockEvent?: unknown }): string[] {
  const problems: string[] = [];
  if (options.onLockEvent !== undefined && typeof options.onLockEvent !== 'function') problems.push('onLockEvent must be a function (event) => void');
  if (options.observers !== undefined) {
    if (!Array.isArray(options.observers)) problems.push('observers must be an array of { onLockEvent(event) }');
    else
      options.observers.forEach((o, i) => {
        if (o === null || typeof o !== 'object' || typeof (o as LockObserver).onLockEvent !== 'function') {
          problems.push(`observers[${i}] must be an object with an onLockEvent(event) method`);
        }
      });
  }
  return problems;
}
