/**
 * An opt-in exception filter of `ormlock/nestjs` that answers ormlock's errors with the HTTP
 * status a client can act on, instead of Nest's generic 500:
 *
 * | error                                                                 | status |
 * |-----------------------------------------------------------------------|--------|
 * | StaleEntityError, LockNotAvailableError, UniqueViolationError,        | 409 Conflict |
 * | DeadlockError, SerializationError                                     |        |
 * | LockTimeoutError, PoolExhaustedError, LockLostError                   | 503 Service Unavailable, `Retry-After` |
 * | any other LockError (LockConfigError, TransactionRequiredError, …)    | 500 (a bug, not the client's) |
 *
 * A timeout is 503 with `Retry-After` rather than 423 Locked: the resource is not locked for
 * this client in particular; the server was too busy to serve it in time, and 503 + Retry-After
 * is what HTTP clients, proxies and load balancers know how to retry.
 */
import { Catch, Inject, Optional, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import {
  DeadlockError,
  LockError,
  LockLostError,
  LockNotAvailableError,
  LockTimeoutError,
  PoolExhaustedError,
  SerializationError,
  StaleEntityError,
  UniqueViolationError,
} from '../errors';

export interface OrmlockExceptionFilterOptions {
  /** The `Retry-After` of a 503, in seconds (default 1). */
  retryAfterSeconds?: number;
}

/** The token of `OrmlockExceptionFilterOptions` when the filter is a provider (`APP_FILTER`). */
export const ORMLOCK_EXCEPTION_FILTER_OPTIONS = Symbol('ORMLOCK_EXCEPTION_FILTER_OPTIONS');

/** The HTTP answer to an ormlock error: its status, and for 503 its Retry-After (seconds). */
export function ormlockHttpStatus(error: LockError, options: OrmlockExceptionFilterOptions = {}): { status: number; retryAfterSeconds?: number } {
  if (
    error instanceof StaleEntityError ||
    error instanceof LockNotAvailableError ||
    error instanceof UniqueViolationError ||
    error instanceof DeadlockError ||
    error instanceof SerializationError
  ) {
    return { status: 409 };
  }
  if (error instanceof LockTimeoutError || error instanceof PoolExhaustedError || error instanceof LockLostError) {
    return { status: 503, retryAfterSeconds: options.retryAfterSeconds ?? 1 };
  }
  return { status: 500 };
}

/**
 * ```ts
 * // every route: as a provider (gets the HTTP adapter injected)
 * @Module({ providers: [{ provide: APP_FILTER, useClass: OrmlockExceptionFilter }] })
 * // or in main.ts
 * app.useGlobalFilters(new OrmlockExceptionFilter(app.get(HttpAdapterHost)));
 * ```
 * The body is Nest's: `{ statusCode, message, error }` with the error's `code` (e.g.
 * `STALE_ENTITY`); a 500's message is Nest's generic one (the detail stays in your logs).
 * Outside HTTP (microservices, websockets) it rethrows the error unchanged.
 */
@Catch(LockError)
export class OrmlockExceptionFilter implements ExceptionFilter<LockError> {
  constructor(
    @Optional() private readonly adapterHost?: HttpAdapterHost,
    @Optional() @Inject(ORMLOCK_EXCEPTION_FILTER_OPTIONS) private readonly options: OrmlockExceptionFilterOptions = {},
  ) {}

  catch(error: LockError, host: ArgumentsHost): void {
    const adapter = this.adapterHost?.httpAdapter;
    if (host.getType() !== 'http' || !adapter) throw error;
    const response = host.switchToHttp().getResponse<unknown>();
    const { status, retryAfterSeconds } = ormlockHttpStatus(error, this.options ?? {});
    if (retryAfterSeconds !== undefined) adapter.setHeader(response, 'Retry-After', String(retryAfterSeconds));
    const body =
      status === 500
        ? { statusCode: 500, message: 'Internal server error' }
        : { statusCode: status, message: error.message, error: status === 409 ? 'Conflict' : 'Service Unavailable', code: error.code };
    adapter.reply(response, body, status);
  }
}
