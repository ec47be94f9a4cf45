import { LockError } from '../../errors';
import { deadlocked, lockNotAvailable, lockWaitTimedOut } from '../../faults/drivers';
import { driverCode, type ErrorContext } from '../dialect';
import { describeErrorContext } from '../postgres/errors';
import { cancelledError, connectionLostError, isReleasedRunnerError } from '../lost-connection';

/** The one place where MySQL/MariaDB error numbers become ormlock errors. */
export function convertMysqlError(error: unknown, ctx: ErrorContext = {}): LockError | undefined {
  if (error instanceof LockError) return error;
  const { errno, message } = driverCode(error);
  const waitedMs = ctx.startedAt !== undefined ? Date.now() - ctx.startedAt : undefined;
  const base = { entity: ctx.entity, id: ctx.id, key: ctx.key, method: ctx.method, waitedMs, cause: error, errno };
  const what = describeErrorContext(ctx);
  switch (errno) {
    case 1213:
      return deadlocked(what, 'MySQL 1213', message, base);
    case 3572: // ER_LOCK_NOWAIT (MySQL 8)
      return lockNotAvailable(what, 'MySQL 3572', base);
    case 1205: // ER_LOCK_WAIT_TIMEOUT; MariaDB also reports NOWAIT with it
      if (ctx.onLocked === 'nowait' || ctx.timeoutMs === 0) {
        return lockNotAvailable(what, 'MySQL 1205', base);
      }
      return lockWaitTimedOut(what, ctx.timeoutMs, 'MySQL 1205', base);
    case 1317: // ER_QUERY_INTERRUPTED (KILL QUERY)
    case 1969: // MariaDB ER_STATEMENT_TIMEOUT (max_statement_time)
    case 3024: // MySQL ER_QUERY_TIMEOUT (max_execution_time)
      return cancelledError(ctx, message, what, `MySQL ${errno}`, base);
    default:
      return isMysqlConnectionLost(error) ? connectionLostError(error, message, what, base) : undefined;
  }
}

/** True when the error means the connection, and everything held on it, is gone. */
export function isMysqlConnectionLost(error: unknown): boolean {
  if (isReleasedRunnerError(error)) return true;
  const e = (error as { driverError?: { fatal?: unknown }; fatal?: unknown }) ?? {};
  if (e.fatal === true || e.driverError?.fatal === true) return true;
  const { code, errno, message } = driverCode(error);
  if (errno !== undefined && [1927, 2006, 2013, 1053].includes(errno)) return true;
  if (code && /^(PROTOCOL_CONNECTION_LOST|ECONNRESET|EPIPE|ECONNREFUSED|ER_CONNECTION_KILLED|ER_SERVER_SHUTDOWN)$/.test(code)) return true;
  return /closed state|connection lost|server has gone away|connection was killed/i.test(message);
}

export function isMysqlUniqueViolation(error: unknown): boolean {
  return driverCode(error).errno === 1062;
}
