import type { OrmConnection, OrmManager } from '../orm/port';
import type { LockDialect } from '../dialects/dialect';
import { describeValue, isPlainObject } from '../arguments';
import type { LockErrorDetails } from '../errors';
import { sharedAdvisoryUnavailable } from '../faults/advisory';
import { keyFunctionReturnedNothing, keyFunctionReturnedPromise, keyFunctionThrew } from '../faults/keys';

/**
 * Advisory-lock options and keys as users give them: their types, the shape checks (named
 * after the method or entity they were declared on) and the evaluation of key functions.
 * What the database can do is asked of the dialect; the locking itself is in advisory.ts.
 */

export type AdvisoryScope = 'transaction' | 'session';
export type OnAdvisoryTimeout = 'throw' | 'skip';

export interface AdvisoryLockOptions {
  /** `transaction` (default): held until the transaction ends; `session`: held for the body only. */
  scope?: AdvisoryScope;
  /** Longest wait: undefined waits (or installLocking's `advisoryTimeoutMs`), 0 tries once. */
  timeoutMs?: number;
  /** A shared lock (several holders, excludes exclusive ones). PostgreSQL only; elsewhere LockConfigError. */
  shared?: boolean;
  /** `throw` (default): LockTimeoutError / LockNotAvailableError; `skip`: the body does not run and the call returns undefined. */
  onTimeout?: OnAdvisoryTimeout;
  /** Which installation (DataSource, MikroORM instance), when several are installed. */
  dataSource?: unknown;
}

/** Options that can be given with `onTimeout: 'skip'`, so the result may be undefined. */
export type AdvisoryLockSkipOptions = AdvisoryLockOptions & { onTimeout: 'skip' };

/** What the body of `withAdvisoryLock` receives. */
export interface AdvisoryLockContext {
  /** The connection that holds the lock (the transaction's, or the one pinned by a session lock). */
  readonly queryRunner: OrmConnection;
  /** A manager on that connection: use it in a session-scoped body to need no second connection. */
  readonly manager: OrmManager;
  readonly scope: AdvisoryScope;
  /** The keys, as the user gave them, in the order they were taken. */
  readonly keys: readonly string[];
  /** False when every key was already held by this async context (a re-entrant call). */
  readonly acquired: boolean;
  /**
   * Aborts when the lock is lost (its connection died); the reason is the LockLostError the call
   * rejects with. The same signal as `currentLockSignal()` inside the body.
   */
  readonly signal: AbortSignal;
}

export interface AdvisoryLockExistsOptions {
  dataSource?: unknown;
}

/** Who asked, for messages: `withAdvisoryLock`, `@AdvisoryLock on Billing.charge`, … */
export interface AdvisorySubject {
  readonly label: string;
  readonly method?: string;
  readonly entity?: string;
  /** How lock events name it: 'advisory' (default), or 'tree' for @LockedTree's tree lock. */
  readonly kind?: 'advisory' | 'tree';
}

const SCOPES: readonly AdvisoryScope[] = ['transaction', 'session'];
const ON_TIMEOUT: readonly OnAdvisoryTimeout[] = ['throw', 'skip'];
const OPTION_NAMES = new Set(['scope', 'timeoutMs', 'shared', 'onTimeout', 'dataSource']);

/**
 * Checks the shape of advisory options (not what the database can do). Returns the problems,
 * so decorators can report them naming the method or entity.
 */
export function advisoryOptionProblems(options: unknown): string[] {
  if (options === undefined) return [];
  if (!isPlainObject(options)) return [`options must be an object (got ${describeValue(options)})`];
  const o = options as Record<string, unknown>;
  const problems: string[] = [];
  for (const name of Object.keys(o)) if (!OPTION_NAMES.has(name)) problems.push(`unknown option '${name}' (known: ${[...OPTION_NAMES].join(', ')})`);
  if (o.scope !== undefined && !SCOPES.includes(o.scope as AdvisoryScope)) problems.push(`scope '${String(o.scope)}' is not one of ${SCOPES.join(', ')}`);
  if (o.onTimeout !== undefined && !ON_TIMEOUT.includes(o.onTimeout as OnAdvisoryTimeout)) {
    problems.push(`onTimeout '${String(o.onTimeout)}' is not one of ${ON_TIMEOUT.join(', ')}`);
  }
  const t = o.timeoutMs;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 0)) problems.push(`timeoutMs must be a number ≥ 0 (got ${String(t)})`);
  if (o.shared !== undefined && typeof o.shared !== 'boolean') problems.push(`shared must be a boolean (got ${String(o.shared)})`);
  if (o.dataSource !== undefined && (o.dataSource === null || typeof o.dataSource !== 'object')) {
    problems.push('dataSource must be an installed DataSource or MikroORM instance');
  }
  return problems;
}

/** Throws LockConfigError when `dialect` cannot honour the options (shared locks). */
export function checkAdvisoryOptionsFor(dialect: LockDialect, options: AdvisoryLockOptions | undefined, subject: AdvisorySubject): void {
  if (options?.shared && !dialect.capabilities.sharedAdvisoryLocks) {
    throw sharedAdvisoryUnavailable(subject.label, dialect.name, subjectDetails(subject));
  }
}

/** The details an advisory fault carries about who asked: the method or entity of the subject. */
export function subjectDetails(subject: AdvisorySubject, extra: LockErrorDetails = {}): LockErrorDetails {
  return { method: subject.method, entity: subject.entity, ...extra };
}

/**
 * Evaluates a key that may be a function (of the method's arguments, with `thisArg` as
 * `this`). A function that throws, returns nothing or returns a Promise is a LockConfigError
 * naming the subject.
 */
export function evaluateAdvisoryKey(key: unknown, thisArg: unknown, args: unknown[], subject: AdvisorySubject): unknown {
  if (typeof key !== 'function') return key;
  let value: unknown;
  try {
    value = key.apply(thisArg, args);
  } catch (error) {
    throw keyFunctionThrew(subject.label, error, subjectDetails(subject));
  }
  if (value === undefined || value === null) throw keyFunctionReturnedNothing(subject.label, value, subjectDetails(subject));
  if (typeof (value as { then?: unknown }).then === 'function') {
    throw keyFunctionReturnedPromise(subject.label, subjectDetails(subject));
  }
  return value;
}
