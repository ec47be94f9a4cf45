/**
 * The options of a Redlock and of its calls, as users give them, with their defaults and shape
 * checks (one wording per fault). The Redlock itself is redlock.ts.
 */
import { badOption } from '../faults/options';
import { ttlWithinDrift } from '../faults/redis';
import type { LockEvent, LockObserver } from '../observe/events';
import type { FencingOptions } from './fencing';
import type { LeaseTransactionOptions } from './lease-transaction';

export interface RedlockOptions {
  /** Put before every key, followed by `:` (default none): e.g. your application's name. */
  namespace?: string;
  /** Prefix of every lock key after the namespace (default `'lock:'`), used verbatim. */
  prefix?: string;
  /**
   * Mint fencing tokens in this database instead of Redis: one counter row per key, strictly
   * increasing even after every Redis node lost its data. Costs one statement per acquisition.
   * The DataSource must be installed (`installLocking`) and have the table (`createFencingTable`).
   */
  fencing?: FencingOptions;
  /** Lock events of this Redlock's leases (kind 'lease': acquired, released with heldMs, not_available, lost); errors they throw are ignored. */
  observers?: readonly LockObserver[];
  /** Shorthand for one observer. */
  onLockEvent?: (event: LockEvent) => void;
  /** Clock drift allowance as a fraction of the TTL (default 0.01); validity = ttl − elapsed − (ttl·driftFactor + 2 ms). */
  driftFactor?: number;
  /** Default retries of `acquire`/`using` after the first attempt (default 10). */
  retryCount?: number;
  /** Default delay between attempts, ms (default 200). */
  retryDelayMs?: number;
  /** Default random ± jitter added to the delay, ms (default 100). */
  retryJitterMs?: number;
  /** `using()` extends the lease when this many ms of validity are left (default min(500, validity/2)). */
  automaticExtensionThresholdMs?: number;
  /** Per-node timeout of one script call, ms (default ttl/10 clamped to 50…1000). A node slower than this votes against. */
  nodeTimeoutMs?: number;
  /**
   * The monotonic clock (ms) that validity, drift and extensions are measured with (default
   * `performance.now`). For tests: a reading below an earlier one makes a lease's validity
   * unknown, so it counts as run out.
   */
  clock?: () => number;
}

export interface AcquireOptions {
  retryCount?: number;
  retryDelayMs?: number;
  retryJitterMs?: number;
}

export interface UsingOptions extends AcquireOptions, LeaseTransactionOptions {
  automaticExtensionThresholdMs?: number;
  /**
   * Inside an ambient transaction, keep the lease after `fn` until that transaction has ended
   * (committed or rolled back) instead of releasing it when `fn` returns: no other holder of the
   * key reads the rows before they are committed. The lease is confirmed on a quorum and extended
   * to a full TTL when `fn` returns (not extended after that: the TTL must cover the rest of the
   * transaction). Outside a transaction, or when `fn` throws, it is released at once as usual.
   */
  releaseAfterCommit?: boolean;
}

export const DEFAULTS = {
  prefix: 'lock:',
  driftFactor: 0.01,
  retryCount: 10,
  retryDelayMs: 200,
  retryJitterMs: 100,
};

/** The default options object: recognised by identity, so the hot path skips re-validating defaults. */
export const EMPTY: UsingOptions = Object.freeze({});

export function checkTtl(ttlMs: unknown, drift: number): void {
  if (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs <= 0) {
    throw badOption('Redlock', 'ttlMs', 'a positive integer number of milliseconds', ttlMs, { ttlMs });
  }
  if (ttlMs <= drift) {
    throw ttlWithinDrift(ttlMs, drift);
  }
}

export function checkNumber(name: string, value: unknown, ok: (v: number) => boolean, expected: string): number {
  if (typeof value !== 'number' || Number.isNaN(value) || !ok(value)) {
    throw badOption('Redlock', name, expected, value, { [name]: value });
  }
  return value;
}

export function checkRetryOptions(options: AcquireOptions, defaults: Required<AcquireOptions>): Required<AcquireOptions> {
  return {
    retryCount: checkNumber('retryCount', options.retryCount ?? defaults.retryCount, (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer'),
    retryDelayMs: checkNumber(
      'retryDelayMs',
      options.retryDelayMs ?? defaults.retryDelayMs,
      (v) => Number.isFinite(v) && v >= 0,
      'a non-negative number of ms',
    ),
    retryJitterMs: checkNumber(
      'retryJitterMs',
      options.retryJitterMs ?? defaults.retryJitterMs,
      (v) => Number.isFinite(v) && v >= 0,
      'a non-negative number of ms',
    ),
  };
}

/** The delay before the next attempt: `retryDelayMs` ± a random `retryJitterMs`. */
export function retryDelay(retry: Required<AcquireOptions>): number {
  const jitter = retry.retryJitterMs ? Math.floor((Math.random() * 2 - 1) * retry.retryJitterMs) : 0;
  return Math.max(0, retry.retryDelayMs + jitter);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
