/**
 * The faults of advisory lock keys (src/locks/advisory-key.ts): a key that cannot be encoded.
 * One factory per fault, one wording; the caller throws what it returns. (Redis keys: ./redis.)
 */
import { LockConfigError, type LockErrorDetails } from '../errors';

/** `key` (described as `described`) cannot be an advisory lock key; `why` says which part fails. */
export function invalidAdvisoryKey(label: string, described: string, why: string, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${label}: invalid advisory lock key ${described}: ${why}`, details);
}
