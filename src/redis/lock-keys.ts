/**
 * Lease keys as users give them, and the Redis keys they become. A lock key `k` is stored at
 * `{namespace}:{prefix}{k}`: the Redlock's `namespace` followed by `:` when it is not empty, then
 * `prefix` (default `lock:`) verbatim, then the key; e.g. namespace `shop`, key `order:42` →
 * `shop:lock:order:42`. The fencing counter of a Redlock lives at `{namespace}:{prefix}` itself
 * (the empty key, never a valid lock key, so it cannot collide with one).
 */
import { isWellFormed } from '../arguments';
import { badOption } from '../faults/options';
import { badLeaseKey } from '../faults/redis';

/** One key (a non-empty string; numbers and bigints are converted) or several (one lease on all). */
export type LockKey = string | number | bigint;
export type LockKeys = LockKey | readonly LockKey[];

/** What one acquisition locks. */
export interface AcquireRequest {
  /** The keys as given (distinct, as strings). */
  keys: string[];
  /** The Redis keys (namespace and prefix included). */
  resources: string[];
  /** The Redis fencing counter. */
  fenceKey: string;
  ttlMs: number;
}

/** The request of a lease on `key` under `base` (`namespace:` + prefix). */
export function lockRequest(base: string, key: LockKeys, ttlMs: number): AcquireRequest {
  // The common case first: one non-empty, well-formed string key.
  if (typeof key === 'string' && key.length > 0 && isWellFormed(key)) return { keys: [key], resources: [base + key], fenceKey: base, ttlMs };
  const keys = normalizeKeys(key);
  return { keys, resources: keys.map((k) => base + k), fenceKey: base, ttlMs };
}

function normalizeKeys(key: LockKeys): string[] {
  const list = Array.isArray(key) ? (key as readonly LockKey[]) : [key as LockKey];
  if (list.length === 0) throw badLeaseKey('no key given (an empty array of keys)');
  const out: string[] = [];
  for (const k of list) {
    if (typeof k === 'number' && !Number.isFinite(k)) throw badLeaseKey(`lock key ${k} is not a finite number`, { key: k });
    if (typeof k !== 'string' && typeof k !== 'number' && typeof k !== 'bigint') {
      throw badOption('Redlock', 'a lock key', 'a string, number or bigint', k, { key: k });
    }
    const s = String(k);
    if (s.length === 0) throw badLeaseKey('a lock key must not be empty', { key: k });
    // A lone surrogate would be sent as U+FFFD, so two different keys would be one lock.
    if (!isWellFormed(s)) throw badLeaseKey('a lock key must be well-formed UTF-16 (it has a lone surrogate)', { key: k });
    // The same key twice in one lease is the same lock (e.g. a transfer from an account to itself).
    if (!out.includes(s)) out.push(s);
  }
  return out;
}
