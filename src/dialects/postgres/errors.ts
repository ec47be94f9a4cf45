import { LockError } from '../../errors';
import { deadlocked, lockNotAvailable, lockWaitTimedOut, serializationFailure } from '../../faults/drivers';
import { driverCode, type ErrorContext } from '../dialect';
import { cancelledError, connectionLostError, isReleasedRunnerError } from '../lost-connection';

/** The one place where PostgreSQL SQLSTATEs become ormlock errors. */
export function convertPostgresError(error: unknown, ctx: ErrorContext = {}): LockError | undefined {
  if (error instanceof LockError) return error;
  const { code, message } = driverCode(error);
  const waitedMs = ctx.startedAt !== undefined ? Date.now() - ctx.startedAt : undefined;
  const base = { entity: ctx.entity, id: ctx.id, key: ctx.key, method: ctx.method, waitedMs, cause: error, sqlState: code };
  const what = describe(ctx);
  switch (code) {
    case '40P01':
      return deadlocked(what, 'PG 40P01', message, base);
    case '40001':
      return serializationFailure(what, 'PG 40001', message, base);
    case '55P03':
      if (ctx.onLocked === 'nowait' || ctx.timeoutMs === 0) {
        return lockNotAvailable(what, 'PG 55P03', base);
      }
      return lockWaitTimedOut(what, ctx.timeoutMs, 'PG 55P03', base);
    case '57014':
      return cancelledError(ctx, message, what, 'PG 57014', base);
    default:
      return isPostgresConnectionLost(error) ? connectionLostError(error, message, what, base) : undefined;
  }
}

/** True when the error means the connection, and everything held on it, is gone. */
export function isPostgresConnectionLost(error: unknown): boolean {
  if (isReleasedRunnerError(error)) return true;
  const { code, message } = driverCode(error);
  if (code && /^(57P0[123]|08\w{3}|ECONNRESET|EPIPE|ECONNREFUSED)$/.test(code)) return true;
  return /Connection terminated|not queryable|connection is closed|terminating connection|Client was closed/i.test(message);
}

export function isPostgresUniqueViolation(error: unknown): boolean {
  return driverCode(error).code === '23505';
}

function describe(ctx: ErrorContext): string {
  const parts: string[] = [];
  if (ctx.entity) parts.push(`${ctx.entity}${ctx.id !== undefined ? ` ${JSON.stringify(ctx.id)}` : ''}`);
  if (ctx.key !== undefined) parts.push(`key ${JSON.stringify(ctx.key)}`);
  if (ctx.method) parts.push(`in ${ctx.method}`);
  return parts.length ? ` on ${parts.join(' ')}` : '';
}
export { describe as describeErrorContext };
