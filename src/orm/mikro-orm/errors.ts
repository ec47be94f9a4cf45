import { OptimisticLockError } from '@mikro-orm/core';
import type { ErrorContext, LockDialect } from '../../dialects/dialect';
import { LockError, type StaleEntityError } from '../../errors';
import { ormOptimisticLockFailed } from '../../faults/drivers';

/**
 * The installation's dialect, with MikroORM's errors understood: `OptimisticLockError` becomes
 * StaleEntityError; MikroORM's DriverException subclasses keep the driver's `code` / `errno` /
 * `sqlState` as own properties, so the dialect's one converter reads them as it reads the driver's
 * (PG 55P03 — a generic DriverException in MikroORM — becomes LockTimeoutError / LockNotAvailableError).
 */
export function withMikroOrmErrors(base: LockDialect): LockDialect {
  const dialect = Object.create(base) as LockDialect;
  Object.defineProperty(dialect, 'convertError', {
    value(error: unknown, ctx?: ErrorContext): LockError | undefined {
      if (error instanceof LockError) return error;
      if (error instanceof OptimisticLockError) return staleFrom(error);
      return base.convertError(unwrap(error), ctx);
    },
  });
  Object.defineProperty(dialect, 'isUniqueViolation', {
    value: (error: unknown) => base.isUniqueViolation(unwrap(error)),
  });
  return dialect;
}

/** The driver error inside a MikroORM exception (its `previous`, where one is kept). */
function unwrap(error: unknown): unknown {
  const e = error as { code?: unknown; errno?: unknown; previous?: unknown } | null;
  if (e && typeof e === 'object' && e.code === undefined && e.errno === undefined && e.previous) return e.previous;
  return error;
}

function staleFrom(error: OptimisticLockError): StaleEntityError {
  const entity = (error as { getEntity?: () => unknown }).getEntity?.() as object | undefined;
  return ormOptimisticLockFailed(error.message, entity?.constructor?.name, error);
}
