import { isWellFormed, optionsProblems } from '../arguments';
import { badOption } from '../faults/options';
import { advisoryOptionProblems, type AdvisoryScope, type OnAdvisoryTimeout } from './advisory-options';

/**
 * Counting-semaphore arguments as users give them: the name, the number of permits and the
 * options of `withSemaphore` / `@Semaphore` (database), and the name and permits of
 * `redlock.semaphore` (Redis). Shape checks only; the strategies are semaphore.ts and
 * src/redis/semaphore.ts.
 */

export interface SemaphoreOptions {
  /** `transaction` (default): the permit is held until the transaction ends; `session`: for the body only, on a pinned connection. */
  scope?: AdvisoryScope;
  /** Longest wait for a permit: undefined waits (or installLocking's `advisoryTimeoutMs`), 0 tries each slot once. */
  timeoutMs?: number;
  /** `throw` (default): LockTimeoutError / LockNotAvailableError; `skip`: the body does not run and the call returns undefined. */
  onTimeout?: OnAdvisoryTimeout;
  /** Which installation (DataSource, MikroORM instance), when several are installed. */
  dataSource?: unknown;
}

/** Options that can be given with `onTimeout: 'skip'`, so the result may be undefined. */
export type SemaphoreSkipOptions = SemaphoreOptions & { onTimeout: 'skip' };

/** What the body of `withSemaphore` receives. */
export interface SemaphorePermit {
  /** Grows with every grant of this semaphore (drawn from the database's token sequence). */
  readonly token: bigint;
  /** Aborted when ormlock finds the permit lost (its connection gone). */
  readonly signal: AbortSignal;
  /** Which of the `permits` slots this permit holds (0-based). */
  readonly slot: number;
}

const OPTION_NAMES = ['scope', 'timeoutMs', 'onTimeout', 'dataSource'] as const;
const MAX_NAME_LENGTH = 512;

/** The problems of a semaphore's options (unknown names, bad values). */
export function semaphoreOptionProblems(options: unknown): string[] {
  const problems = optionsProblems(options, OPTION_NAMES);
  return problems.length ? problems : advisoryOptionProblems(options);
}

/**
 * The usual case, without building a problem list: undefined, or a plain object literal whose
 * keys are known and whose values are fine. False only sends the caller to
 * `semaphoreOptionProblems`, which has the last word (and the wording).
 */
export function semaphoreOptionsFine(options: unknown): boolean {
  if (options === undefined) return true;
  if (options === null || typeof options !== 'object' || Object.getPrototypeOf(options) !== Object.prototype) return false;
  const o = options as Record<string, unknown>;
  for (const key in o) {
    const v = o[key];
    switch (key) {
      case 'scope':
        if (v !== undefined && v !== 'transaction' && v !== 'session') return false;
        break;
      case 'timeoutMs':
        if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) return false;
        break;
      case 'onTimeout':
        if (v !== undefined && v !== 'throw' && v !== 'skip') return false;
        break;
      case 'dataSource':
        if (v !== undefined && (v === null || typeof v !== 'object')) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** A semaphore name: a non-empty, well-formed string of at most 512 characters. */
export function checkSemaphoreName(name: unknown, where: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH || !isWellFormed(name)) {
    throw badOption(where, 'the name', `a non-empty, well-formed string of at most ${MAX_NAME_LENGTH} characters`, name, { key: name });
  }
  return name;
}

/** A number of permits: a positive safe integer. */
export function checkPermits(permits: unknown, where: string, name: unknown): number {
  if (typeof permits !== 'number' || !Number.isSafeInteger(permits) || permits < 1) {
    throw badOption(where, `permits of semaphore ${JSON.stringify(String(name))}`, 'a positive integer', permits, { key: name, permits });
  }
  return permits;
}
