/**
 * The faults of advisory locks at run time: a key held elsewhere, a wait that ran out, a lock
 * lost with its connection. One factory per fault, one wording; the caller throws what it returns.
 */
import { LockLostError, LockNotAvailableError, LockTimeoutError, type LockErrorDetails } from '../errors';

/** `timeoutMs: 0` and the key `key` (as described) is held by another session. */
export function advisoryHeldElsewhere(label: string, key: string, details: LockErrorDetails): LockNotAvailableError {
  return new LockNotAvailableError(`${label}: advisory lock ${key} is held elsewhere (timeoutMs: 0)`, details);
}

/** The key was not obtained within `timeoutMs`; `who` names the holders when they are known (or is empty). */
export function advisoryTimedOut(label: string, key: string, timeoutMs: number | undefined, who: string, details: LockErrorDetails): LockTimeoutError {
  return new LockTimeoutError(`${label}: advisory lock ${key} not obtained within ${timeoutMs} ms${who}`, details);
}

/** The connection holding `targets` (of `what`: 'advisory lock' or 'tree lock') died before the lock was released. */
export function heldLockLost(what: string, targets: readonly string[], details: LockErrorDetails): LockLostError {
  return new LockLostError(`${what}: the connection holding ${targets.join(', ')} was lost; the lock was not held to the end`, details);
}
