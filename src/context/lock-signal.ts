import { childFrame, currentFrame, runInFrame } from './store';

/**
 * The lock signal: every lock scope (row lock, advisory lock, lease, semaphore permit, scheduled
 * lock) runs its body with an AbortSignal that aborts when that lock is lost (connection killed,
 * lease expired, `lockAtMostFor` passed). `currentLockSignal()` gives the innermost one; an inner
 * scope's signal also aborts when an outer scope's does (a body inside two locks loses both when
 * it loses the outer one).
 */

/** The AbortSignal of the innermost lock scope of this async context, or undefined outside one. */
export function currentLockSignal(): AbortSignal | undefined {
  return currentFrame()?.lockSignal;
}

/**
 * Runs `fn` as a lock scope whose lock is lost when `signal` aborts. Returns the signal the body
 * sees (`signal` joined with the enclosing scope's) through `fn`'s argument.
 */
export function runWithLockSignal<T>(signal: AbortSignal, fn: (signal: AbortSignal) => T): T {
  const outer = currentFrame()?.lockSignal;
  const joined = outer && outer !== signal ? AbortSignal.any([outer, signal]) : signal;
  return runInFrame(childFrame({ lockSignal: joined }), () => fn(joined));
}
