/**
 * The faults of advisory locks at run time: a key held elsewhere, a wait that ran out, a lock
 * lost with its connection. One factory per fault, one wording; the caller throws what it returns.
 */
import { LockConfigError, LockLostError, LockNotAvailableError, LockTimeoutError, type LockErrorDetails } from '../errors';

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

/* Faults of advisory options and plans, found before any lock is taken (src/locks/advisory-*.ts, pooler-guard.ts). */

/** `{ shared: true }` on a database whose advisory locks are exclusive only. */
export function sharedAdvisoryUnavailable(label: string, dialect: string, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${label}: shared advisory locks are not available on ${dialect} (GET_LOCK is exclusive only); drop { shared: true }`, details);
}

/** A key this context holds shared is asked for exclusive: upgrading would deadlock with the other shared holders. */
export function sharedNotUpgradable(label: string, key: string, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(
    `${label}: advisory lock ${key} is already held shared by this context; it cannot be upgraded to exclusive ` +
      `(that would deadlock with the other shared holders). Take it exclusive in the outer call.`,
    details,
  );
}

/**
 * `what` (a feature holding session state, e.g. "session-scope advisory locks") on an installation
 * (`installation`: its label) with `pooler: 'transaction'` (`detected`: found at installLocking); `advice` says what to do instead.
 */
export function sessionStateBehindPooler(
  label: string,
  what: string,
  installation: string,
  detected: boolean,
  advice: string,
  details: LockErrorDetails,
): LockConfigError {
  return new LockConfigError(
    `${label}: ${what} cannot work behind a transaction-pooling connection pooler (${installation} is installed with ` +
      `pooler: 'transaction'${detected ? ', detected at installLocking' : ''}): the pooler hands each transaction ` +
      'to whichever server connection is free, so a lock held by a server session stays with a connection other clients then use, ' +
      `and its release may run on another one. ${advice}`,
    details,
  );
}
