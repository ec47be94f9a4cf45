import { DeadlockError, LockError, LockNotAvailableError, LockTimeoutError } from '../../errors';
import { driverCode, type ErrorContext } from '../dialect';
import { describeErrorContext } from '../postgres/errors';

/** The one place where MySQL/MariaDB error numbers become ormlock errors. */
export function convertMysqlError(error: unknown, ctx: ErrorContext = {}): LockError | undefined {
  if (error instanceof LockError) return error;
  const { errno, message } = driverCode(error);
  const waitedMs = ctx.startedAt !== undefined ? Date.now() - ctx.startedAt : undefined;
  const base = { entity: ctx.entity, id: ctx.id, key: ctx.key, method: ctx.method, waitedMs, cause: error, errno };
  const what = describeErrorContext(ctx);
  switch (errno) {
    case 1213:
      return new DeadlockError(`Deadlock detected${what}; this transaction was rolled back (MySQL 1213): ${message}`, base);
    case 3572: // ER_LOCK_NOWAIT (MySQL 8)
      return new LockNotAvailableError(`Lock not available${what} (MySQL 3572, nowait)`, base);
    case 1205: // ER_LOCK_WAIT_TIMEOUT; MariaDB also reports NOWAIT with it
      if (ctx.onLocked === 'nowait' || ctx.timeoutMs === 0) {
        return new LockNotAvailableError(`Lock not available${what} (MySQL 1205, nowait)`, base);
      }
      return new LockTimeoutError(
        `Lock wait timed out${what}${ctx.timeoutMs !== undefined ? ` after ${ctx.timeoutMs} ms` : ''} (MySQL 1205)`,
        base,
      );
    default:
      return undefined;
  }
}

export function isMysqlUniqueViolation(error: unknown): boolean {
  return driverCode(error).errno === 1062;
}
