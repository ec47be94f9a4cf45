import { LockScope } from './scope';
import { childFrame, currentFrame, runInFrame, type Frame } from './store';

export { LockScope } from './scope';

/**
 * The lock signal: every lock scope (row lock, advisory lock, lease, semaphore permit, scheduled
 * lock) runs its body with an AbortSignal that aborts when that lock is lost (connection killed,
 * lease expired, `lockAtMostFor` passed). `currentLockSignal()` gives the innermost one; an inner
 * scope's signal also aborts when an outer scope's does (a body inside two locks loses both when
 * it loses the outer one).
 *
 * A scope is a `LockScope`, whose AbortSignal is made only when someone asks for it, and scopes
 * hear each other through hook lists, not EventTarget listeners: on Node 20 creating an
 * AbortSignal, adding an 'abort' listener and `AbortSignal.any` each cost microseconds to a tenth
 * of a millisecond, which every locked call would pay; a scope costs an object and a Set entry.
 */

const noop = () => undefined;

/** The AbortSignal of the innermost lock scope of this async context, or undefined outside one. */
export function currentLockSignal(): AbortSignal | undefined {
  return currentFrame()?.lockScope?.signal;
}

/** The innermost lock scope of this async context, if any. */
export function currentLockScope(): LockScope | undefined {
  return currentFrame()?.lockScope;
}

/**
 * Runs `fn` as a lock scope whose lock is lost when `signal` aborts. Returns the signal the body
 * sees (`signal` joined with the enclosing scope's) through `fn`'s argument.
 */
export function runWithLockSignal<T>(signal: AbortSignal, fn: (signal: AbortSignal) => T): T {
  const scope = new LockScope(currentFrame()?.lockScope ? undefined : signal);
  const heard = () => scope.abort(signal.reason);
  if (signal.aborted) heard();
  else signal.addEventListener('abort', heard, { once: true });
  return runInLockScope(
    scope,
    () => fn(scope.signal),
    () => signal.removeEventListener('abort', heard),
  );
}

/**
 * Runs `fn` with `scope` as the innermost lock scope, joined to the enclosing one (lost when it
 * is). `done` runs when `fn` has settled. `patch`: more fields of the frame `fn` runs in (one
 * frame for the caller's context and the scope, instead of one inside the other).
 */
export function runInLockScope<T>(scope: LockScope, fn: (scope: LockScope) => T, done?: () => void, patch?: Partial<Frame>): T {
  const outer = currentFrame()?.lockScope;
  const unjoin = outer && outer !== scope ? outer.onAbort((reason) => scope.abort(reason)) : noop;
  const close = () => {
    unjoin();
    done?.();
  };
  let result: T;
  try {
    result = runInFrame(childFrame(patch ? { ...patch, lockScope: scope } : { lockScope: scope }), () => fn(scope));
  } catch (error) {
    close();
    throw error;
  }
  const thenable = result as { then?: (ok: () => void, fail: () => void) => unknown } | undefined;
  if (thenable && typeof thenable.then === 'function') thenable.then(close, close);
  else close();
  return result;
}
