import type { IsolationLevel } from '../orm/port';
import { checkFunction, optionsProblems } from '../arguments';
import { ambientTx } from '../context/store';
import { openTransaction, transaction } from '../context/transaction';
import { DeadlockError, LockError, SerializationError, StaleEntityError } from '../errors';
import { badOptions } from '../faults/options';
import { resolveInstallation } from '../installations';

/** An error class (matched with `instanceof`) or a predicate. */
export type RetryMatcher = (abstract new (...args: any[]) => unknown) | ((error: unknown) => boolean);

export interface RetryInfo {
  /** The attempt that failed (1-based). */
  attempt: number;
  /** Its error. */
  error: unknown;
  /** How long the next attempt waits. */
  delayMs: number;
}

export interface RetryOptions {
  /** Total attempts, the first included (default 3). */
  attempts?: number;
  /** Base of the exponential backoff in ms (default 10): attempt n waits random(0, min(maxBackoffMs, backoffMs·2^(n-1))). */
  backoffMs?: number;
  /** Cap of one wait in ms (default 1000). */
  maxBackoffMs?: number;
  /** More errors to retry, besides StaleEntityError, DeadlockError and SerializationError: classes or predicates. */
  on?: RetryMatcher[];
  /** Isolation of each attempt's transaction. */
  isolation?: IsolationLevel;
  /** Which installation (DataSource, MikroORM instance), when several are installed. */
  dataSource?: unknown;
  /** Called before each retry (for metrics and logs); errors it throws are ignored. */
  onRetry?: (info: RetryInfo) => void;
}

const RETRY_OPTIONS = ['attempts', 'backoffMs', 'maxBackoffMs', 'on', 'isolation', 'dataSource', 'onRetry'];
const DEFAULT_ATTEMPTS = 3;
const DEFAULT_BACKOFF_MS = 10;
const DEFAULT_MAX_BACKOFF_MS = 1000;
const BUILT_IN: RetryMatcher[] = [StaleEntityError, DeadlockError, SerializationError];
const NOTED = Symbol('ormlock.retryNoted');

interface ResolvedRetry {
  attempts: number;
  backoffMs: number;
  maxBackoffMs: number;
  matchers: RetryMatcher[];
}

/**
 * Checks retry options; returns the problems (empty when fine). Used by `@RetryOnConflict` when
 * the class is defined and by `retryOnConflict` at each call.
 */
export function retryOptionProblems(options: RetryOptions | undefined): string[] {
  const shape = optionsProblems(options, RETRY_OPTIONS);
  if (options === undefined || shape.length) return shape;
  const problems: string[] = [];
  const { attempts, backoffMs, maxBackoffMs, on, onRetry } = options;
  if (attempts !== undefined && (typeof attempts !== 'number' || !Number.isInteger(attempts) || attempts < 1)) {
    problems.push(`attempts must be an integer ≥ 1 (got ${String(attempts)})`);
  }
  for (const [name, v] of [
    ['backoffMs', backoffMs],
    ['maxBackoffMs', maxBackoffMs],
  ] as const) {
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) problems.push(`${name} must be a finite number ≥ 0 (got ${String(v)})`);
  }
  if (on !== undefined && (!Array.isArray(on) || on.some((m) => typeof m !== 'function'))) {
    problems.push('on must be an array of error classes or predicates (error) => boolean');
  }
  if (onRetry !== undefined && typeof onRetry !== 'function') problems.push('onRetry must be a function');
  return problems;
}

function resolve(options: RetryOptions, source: string): ResolvedRetry {
  const problems = retryOptionProblems(options);
  if (problems.length) throw badOptions(source, problems, { method: source });
  return {
    attempts: options.attempts ?? DEFAULT_ATTEMPTS,
    backoffMs: options.backoffMs ?? DEFAULT_BACKOFF_MS,
    maxBackoffMs: options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS,
    matchers: [...BUILT_IN, ...(options.on ?? [])],
  };
}

/** True when `error` is one a fresh attempt can get past: the built-in conflicts or what `on` adds. */
export function isRetryableConflict(error: unknown, on: RetryMatcher[] = []): boolean {
  return [...BUILT_IN, ...on].some((m) => matches(m, error));
}

function matches(matcher: RetryMatcher, error: unknown): boolean {
  const proto = (matcher as { prototype?: unknown }).prototype;
  // an Error class (or any class): instanceof; anything else is a predicate
  if (proto !== undefined && (proto instanceof Error || matcher === Error || /^class[\s{]/.test(Function.prototype.toString.call(matcher)))) {
    return error instanceof (matcher as abstract new (...args: any[]) => unknown);
  }
  return Boolean((matcher as (e: unknown) => boolean)(error));
}

/**
 * The plain-function twin of `@RetryOnConflict()`: runs `fn` in a fresh transaction and, when it
 * fails with a conflict (StaleEntityError, DeadlockError, SerializationError, or what `on` adds),
 * runs it again — the whole of it, in a new transaction — up to `attempts` times in all, waiting
 * between attempts with exponential backoff and full jitter. The last error is rethrown.
 *
 * Inside an already open transaction it does not retry (the conflict has doomed that
 * transaction; only its owner can restart it): `fn` runs once, joining it, and a conflict is
 * rethrown with a message saying to put the retry outside the transaction.
 *
 * ```ts
 * await retryOnConflict(async () => {
 *   const c = await counters.findOneByOrFail({ id });
 *   c.value += 1;
 *   await counters.save(c);      // @Versioned: StaleEntityError if someone saved in between
 * }, { attempts: 5 });
 * ```
 */
export async function retryOnConflict<T>(fn: (attempt: number) => Promise<T> | T, options: RetryOptions = {}, source = 'retryOnConflict()'): Promise<T> {
  checkFunction(source, fn, 'fn', { method: source });
  const opts = resolve(options, source);
  const inst = resolveInstallation(source, { explicit: options.dataSource });
  const ds = inst.port.target;

  if (ambientTx(inst)) {
    try {
      return await fn(1);
    } catch (error) {
      const converted = inst.dialect.convertError(error) ?? error;
      if (opts.matchers.some((m) => matches(m, converted))) noteNotRetried(error, source);
      throw error;
    }
  }

  for (let attempt = 1; ; attempt++) {
    try {
      // the first attempt, just resolved and checked for an ambient transaction, opens its transaction on
      // `inst` directly (with an isolation, transaction() checks it); retries go through transaction() again
      if (attempt === 1 && options.isolation === undefined) return await openTransaction(inst, true, undefined, () => fn(attempt));
      return await transaction(() => fn(attempt), { dataSource: ds, isolation: options.isolation });
    } catch (error) {
      if (attempt >= opts.attempts || !opts.matchers.some((m) => matches(m, error))) throw error;
      const delayMs = Math.floor(Math.random() * Math.min(opts.maxBackoffMs, opts.backoffMs * 2 ** (attempt - 1)));
      if (options.onRetry) {
        try {
          options.onRetry({ attempt, error, delayMs });
        } catch {
          /* a metrics hook must never change the outcome */
        }
      }
      if (delayMs > 0) await new Promise<void>((r) => setTimeout(r, delayMs));
    }
  }
}

/** Adds to the error's message why it was not retried (once, however many retry layers it crosses). */
function noteNotRetried(error: unknown, source: string): void {
  if (!(error instanceof Error) || (error as any)[NOTED]) return;
  const note =
    ` [${source} did not retry: it ran inside an already open transaction, which this conflict has doomed. ` +
    'Put @RetryOnConflict / retryOnConflict() outside the transaction (on the outermost method, ' +
    'above @Transactional), so that each attempt gets a fresh transaction.]';
  const oldMessage = error.message;
  try {
    Object.defineProperty(error, NOTED, { value: true, enumerable: false });
    error.message = oldMessage + note;
    if (typeof error.stack === 'string' && error.stack.includes(oldMessage)) error.stack = error.stack.replace(oldMessage, error.message);
    if (error instanceof LockError) error.details.retrySkipped = true;
  } catch {
    /* a frozen error keeps its message */
  }
}
