/**
 * Lock events of a Redlock, from its own options (`onLockEvent`, `observers`): the same shape as
 * the installations' LockEvent (DESIGN.md "Observability"), with `kind: 'lease'`.
 */
import { LockConfigError } from '../errors';

export interface LeaseEvent {
  type: 'acquired' | 'released' | 'timeout' | 'not_available' | 'lost';
  kind: 'lease';
  /** The key (or `["a","b"]` for a lease on several keys), as the caller gave it. */
  target: string;
  /** acquired / not_available: ms from the call to the answer (retries included). */
  waitedMs?: number;
  /** released / lost: ms the lease was held (from its grant). */
  heldMs?: number;
}

export interface LeaseObserver {
  onLockEvent(event: LeaseEvent): void;
}

/** Calls every observer; a throwing observer never breaks locking. `null` when there is none (so callers skip building events). */
export type EmitLeaseEvent = ((event: LeaseEvent) => void) | null;

export function leaseEmitter(onLockEvent: unknown, observers: unknown): EmitLeaseEvent {
  const list: LeaseObserver[] = [];
  if (onLockEvent !== undefined) {
    if (typeof onLockEvent !== 'function') throw new LockConfigError(`Redlock: onLockEvent must be a function, got ${typeof onLockEvent}`);
    list.push({ onLockEvent: onLockEvent as LeaseObserver['onLockEvent'] });
  }
  if (observers !== undefined) {
    if (!Array.isArray(observers)) throw new LockConfigError('Redlock: observers must be an array of { onLockEvent(event) }');
    observers.forEach((o, i) => {
      if (!o || typeof (o as LeaseObserver).onLockEvent !== 'function') {
        throw new LockConfigError(`Redlock: observers[${i}] has no onLockEvent(event) method`);
      }
      list.push(o as LeaseObserver);
    });
  }
  if (list.length === 0) return null;
  return (event) => {
    for (const o of list) {
      try {
        o.onLockEvent(event);
      } catch {
        /* an observer must never break locking */
      }
    }
  };
}
