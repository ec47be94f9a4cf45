/**
 * The faults a database reports, as each dialect's error converter (src/dialects/<db>/errors.ts)
 * words them: a deadlock, a serialization failure, a lock not available or waited for too long.
 * One factory per fault, one wording for every database (`code` names the database's own code,
 * e.g. `PG 40P01`, `MySQL 1213`; `what` the lock's subject, e.g. ` on Account {"id":1}`).
 */
import { DeadlockError, LockLostError, LockNotAvailableError, LockTimeoutError, SerializationError, StaleEntityError, type LockErrorDetails } from '../errors';

/** The database chose this transaction as a deadlock victim. */
export function deadlocked(what: string, code: string, message: string, details: LockErrorDetails): DeadlockError {
  return new DeadlockError(`Deadlock detected${what}; this transaction was rolled back (${code}): ${message}`, details);
}

/** A serialization failure: the whole transaction can be retried. */
export function serializationFailure(what: string, code: string, message: string, details: LockErrorDetails): SerializationError {
  return new SerializationError(`Serialization failure${what}; retry the transaction (${code}): ${message}`, details);
}

/** A lock taken with `nowait` (or `timeoutMs: 0`) was held by another transaction. */
export function lockNotAvailable(what: string, code: string, details: LockErrorDetails): LockNotAvailableError {
  return new LockNotAvailableError(`Lock not available${what} (${code}, nowait)`, details);
}

/** A lock was waited for longer than `timeoutMs` (when known). */
export function lockWaitTimedOut(what: string, timeoutMs: number | undefined, code: string, details: LockErrorDetails): LockTimeoutError {
  return new LockTimeoutError(`Lock wait timed out${what}${timeoutMs !== undefined ? ` after ${timeoutMs} ms` : ''} (${code})`, details);
}

/* The two faults every dialect's converter names the same way (src/dialects/lost-connection.ts decides which driver errors they are). */

/** A closed connection: whatever it held (its transaction, every lock taken on it) is gone. `message`: the driver's. */
export function connectionLost(what: string, message: string, details: LockErrorDetails): LockLostError {
  return new LockLostError(
    `Connection lost${what}: the database connection closed, so its transaction rolled back and every lock held on it is gone (${message})`,
    details,
  );
}

/** The statement waiting for a lock was cancelled (`pg_cancel_backend`, `KILL QUERY`, a statement timeout): the lock was not obtained. */
export function lockWaitCancelled(what: string, code: string, message: string, details: LockErrorDetails): LockTimeoutError {
  return new LockTimeoutError(`Lock wait cancelled${what}: the statement waiting for the lock was cancelled (${code}): ${message}`, details);
}

/**
 * The ORM's own optimistic-lock failure (MikroORM's `OptimisticLockError`, `message` its own), as
 * ormlock's StaleEntityError: the row changed since `entity` was loaded.
 */
export function ormOptimisticLockFailed(message: string, entity: string | undefined, cause: unknown): StaleEntityError {
  return new StaleEntityError(`${message}: the row changed since it was loaded; nothing was written. Reload it and apply the change again.`, {
    entity,
    cause,
  });
}
