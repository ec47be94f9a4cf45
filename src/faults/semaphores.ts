/**
 * The faults of counting semaphores, on the database (src/locks/semaphore*.ts) and on Redis
 * (src/redis/semaphore.ts): a database without token sequences, no permit free in time. One
 * factory per fault, one wording; the caller throws what it returns. Shared faults (a wrong name,
 * number of permits or option, a missing token sequence) are in ./options and ./migrations.
 */
import { LockConfigError, LockNotAvailableError, LockTimeoutError, type LockErrorDetails } from '../errors';

/** A database semaphore on a database without sequences (MySQL): its fencing tokens come from one. */
export function semaphoreWithoutSequence(label: string, dialect: string, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(
    `${label}: database semaphores draw their fencing tokens from a sequence, which ${dialect} does not have (PostgreSQL and MariaDB do); use redlock.semaphore(name, permits) on Redis`,
    details,
  );
}

/** `timeoutMs: 0` and every permit of the semaphore `name` is held. */
export function permitsAllHeld(label: string, name: string, permits: number, details: LockErrorDetails): LockNotAvailableError {
  return new LockNotAvailableError(`${label}: all ${permits} permit(s) of semaphore ${JSON.stringify(name)} are held (timeoutMs: 0)`, details);
}

/** No permit of the semaphore `name` came free within `timeoutMs`. */
export function permitTimedOut(label: string, name: string, permits: number, timeoutMs: number | undefined, details: LockErrorDetails): LockTimeoutError {
  return new LockTimeoutError(`${label}: no permit of semaphore ${JSON.stringify(name)} (${permits} permit(s)) came free within ${timeoutMs} ms`, details);
}

/** A Redis semaphore reached no quorum in any attempt; `nodes` come described. */
export function redisPermitNotAcquired(
  name: string,
  permits: number,
  attempts: number,
  waitedMs: number,
  quorum: number,
  nodeCount: number,
  nodes: string,
  details: LockErrorDetails,
): LockNotAvailableError {
  return new LockNotAvailableError(
    `Redis semaphore ${JSON.stringify(name)} (${permits} permits): no permit after ${attempts} attempt(s) in ${waitedMs} ms: ` +
      `quorum ${quorum} of ${nodeCount} not reached (${nodes})`,
    details,
  );
}
