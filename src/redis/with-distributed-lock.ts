import { badOption } from '../faults/options';
import type { Lease } from './lease';
import { LockKeys, Redlock, UsingOptions } from './redlock';

/** Options of `withDistributedLock` / `@DistributedLock` besides the lease TTL. */
export type DistributedLockCallOptions = UsingOptions;

/**
 * The plain-function twin of `@DistributedLock`: runs `fn(lease)` under a Redis lease on `key`
 * (`redlock.using`): acquired with the given retries (`LockNotAvailableError` when it is not),
 * extended automatically while `fn` runs, released afterwards; `LockLostError` if the lease is
 * lost meanwhile (`lease.signal` is aborted then).
 */
export function withDistributedLock<T>(
  redlock: Redlock,
  key: LockKeys,
  ttlMs: number,
  fn: (lease: Lease) => Promise<T> | T,
  options: DistributedLockCallOptions = {},
): Promise<T> {
  if (!(redlock instanceof Redlock)) {
    throw badOption('withDistributedLock', 'the first argument', 'a Redlock instance', redlock);
  }
  return redlock.using(key, ttlMs, fn, options);
}
