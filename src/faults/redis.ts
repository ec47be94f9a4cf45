/**
 * The faults of Redis leases (src/redis/): the Redlock's clients and keys, a lease not acquired or
 * lost, the lease's transaction. One factory per fault, one wording; the caller throws what it
 * returns. Keys come described (`describeKeys`), so this file imports nothing from src/redis.
 * Shared faults (a wrong option value, a dialect without fencing) are in ./options.
 */
import { LockConfigError, LockLostError, LockNotAvailableError, type LockErrorDetails } from '../errors';

/** `new Redlock([])`: no client at all. */
export function noRedisClients(): LockConfigError {
  return new LockConfigError('Redlock needs at least one ioredis client (one per independent Redis node)');
}

/** `clients[i]` is not a client Redlock can use; `why` says what it is instead. */
export function badRedisClient(i: number, why: string, details?: LockErrorDetails): LockConfigError {
  return new LockConfigError(`Redlock: clients[${i}] ${why}`, { node: i, ...details });
}

/** A lock key Redlock cannot use; `why` says what is wrong with it. */
export function badLeaseKey(why: string, details?: LockErrorDetails): LockConfigError {
  return new LockConfigError(`Redlock: ${why}`, details);
}

/** `ttlMs` leaves nothing once the clock-drift allowance is taken off. */
export function ttlWithinDrift(ttlMs: number, drift: number): LockConfigError {
  return new LockConfigError(`Redlock: ttlMs ${ttlMs} leaves no validity after the clock-drift allowance of ${drift} ms`, { ttlMs });
}

/** `dataSource` given to Redlock.using without `{ transaction: true }`. */
export function dataSourceWithoutTransaction(): LockConfigError {
  return new LockConfigError('Redlock.using: the dataSource option only applies with { transaction: true } (add it, or drop dataSource)');
}

/** `{ transaction: true }` on a dataSource with no installation: the installation's own message, prefixed. */
export function leaseTransactionTarget(error: LockConfigError): LockConfigError {
  return new LockConfigError(`Redlock.using({ transaction: true }): ${error.message}`, { cause: error });
}

/** No quorum was reached in any attempt. `keys` and `nodes` come described. */
export function leaseNotAcquired(
  keys: string,
  attempts: number,
  waitedMs: number,
  quorum: number,
  nodeCount: number,
  nodes: string,
  details: LockErrorDetails,
): LockNotAvailableError {
  return new LockNotAvailableError(
    `Redis lease on ${keys} not acquired after ${attempts} attempt(s) in ${waitedMs} ms: quorum ${quorum} of ${nodeCount} not reached (${nodes})`,
    details,
  );
}

/** A lease is no longer held; `how` says how it was found (`lost: …`, `is expired`, `was released; …`). */
export function leaseLost(keys: string, how: string, details: LockErrorDetails, what = 'Redis lease on'): LockLostError {
  return new LockLostError(`${what} ${keys} ${how}`, details);
}

/** The lease could not be confirmed on a quorum just before its transaction's COMMIT. */
export function leaseNotConfirmed(keys: string, error: unknown, details: LockErrorDetails): LockLostError {
  return new LockLostError(`Redis lease on ${keys} could not be confirmed before COMMIT: ${(error as Error)?.message ?? String(error)}`, details);
}

/** The lease was lost and the function failed too: the loss, with the function's failure as its cause. */
export function withCause(lost: LockLostError, failure: unknown): LockLostError {
  return new LockLostError(lost.message, { ...lost.details, cause: failure });
}
