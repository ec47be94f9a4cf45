import type { LockErrorDetails, LockLostError, LockTimeoutError } from '../errors';
import { connectionLost, lockWaitCancelled } from '../faults/drivers';
import type { ErrorContext } from './dialect';

/**
 * The two faults every dialect's converter names the same way: a connection that is gone (the
 * backend was killed, the socket closed, the ORM already gave the connection back) and a
 * statement the server cancelled. The dialect says which driver errors they are; the wording is
 * in src/faults/drivers.ts.
 */

/** TypeORM's error for a statement on a QueryRunner that was released (it releases one whose connection died). */
export function isReleasedRunnerError(error: unknown): boolean {
  return /^QueryRunner(Provider)?AlreadyReleasedError$/.test(String((error as { name?: string } | null)?.name));
}

/** A closed connection: whatever it held (its transaction, every lock taken on it) is gone. */
export function connectionLostError(error: unknown, message: string, what: string, base: LockErrorDetails): LockLostError {
  return connectionLost(what, message, base);
}

/**
 * A cancelled statement (`pg_cancel_backend`, `KILL QUERY`, a statement timeout). While waiting
 * for a lock (`ctx.lockWait`) it is a LockTimeoutError: the lock was not obtained. Otherwise
 * undefined: a cancelled statement of the user's own is not a lock fault.
 */
export function cancelledError(ctx: ErrorContext, message: string, what: string, code: string, base: LockErrorDetails): LockTimeoutError | undefined {
  if (!ctx.lockWait) return undefined;
  return lockWaitCancelled(what, code, message, base);
}
