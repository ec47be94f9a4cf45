/**
 * The faults of advisory lock keys (src/locks/advisory-key.ts): a key that cannot be encoded.
 * One factory per fault, one wording; the caller throws what it returns. (Redis keys: ./redis.)
 */
import { LockConfigError, type LockErrorDetails } from '../errors';

/** `key` (described as `described`) cannot be an advisory lock key; `why` says which part fails. */
export function invalidAdvisoryKey(label: string, described: string, why: string, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${label}: invalid advisory lock key ${described}: ${why}`, details);
}

/* Key functions (a key given as a function of the method's arguments) and the number of keys a call takes. */

/** The key function threw. */
export function keyFunctionThrew(label: string, error: unknown, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${label}: the key function threw: ${(error as Error)?.message ?? String(error)}`, { ...details, cause: error });
}

/** The key function returned `undefined` or `null`. */
export function keyFunctionReturnedNothing(label: string, value: null | undefined, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${label}: the key function returned ${String(value)}; it must return a key`, details);
}

/** The key function returned a Promise (key functions are synchronous). */
export function keyFunctionReturnedPromise(label: string, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${label}: the key function returned a Promise; key functions must be synchronous`, details);
}

/** A call that takes one key was given a key set (`advisoryKeys(...)`). */
export function oneKeyOnly(label: string, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${label}: takes one key (an array is one composite key), not advisoryKeys(...)`, details);
}
