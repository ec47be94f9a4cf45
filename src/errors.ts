/**
 * The one error hierarchy of ormlock. Every error the library throws is a `LockError`
 * with a stable `code`; driver errors are converted into these by each dialect's
 * error converter (src/dialects/<db>/errors.ts), never anywhere else.
 */

export interface LockErrorDetails {
  /** Lock key (advisory or Redis), as the user gave it. */
  key?: unknown;
  /** Entity class name. */
  entity?: string;
  /** Primary-key value(s) of the row concerned. */
  id?: unknown;
  /** Method ("Class.method") concerned. */
  method?: string;
  /** Milliseconds spent waiting before the error. */
  waitedMs?: number;
  /** The original driver error, if any. */
  cause?: unknown;
  [extra: string]: unknown;
}

export class LockError extends Error {
  /** Stable machine-readable code, e.g. `LOCK_TIMEOUT`. */
  readonly code: string = 'LOCK_ERROR';
  readonly key?: unknown;
  readonly entity?: string;
  readonly id?: unknown;
  readonly method?: string;
  readonly waitedMs?: number;
  readonly details: LockErrorDetails;

  constructor(message: string, details: LockErrorDetails = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = new.target.name;
    this.details = details;
    this.key = details.key;
    this.entity = details.entity;
    this.id = details.id;
    this.method = details.method;
    this.waitedMs = details.waitedMs;
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** A lock was waited for longer than `timeoutMs` (PG 55P03 under lock_timeout, MySQL 1205). */
export class LockTimeoutError extends LockError {
  override readonly code: string = 'LOCK_TIMEOUT';
  /** PostgreSQL: the backend(s) holding the lock, when they could be read. */
  readonly blockers?: Array<{ pid: number; query: string | null }>;
  constructor(message: string, details: LockErrorDetails & { blockers?: Array<{ pid: number; query: string | null }> } = {}) {
    super(message, details);
    this.blockers = details.blockers;
  }
  /** PID of the first blocking backend (PostgreSQL), if known. */
  get blockerPid(): number | undefined {
    return this.blockers?.[0]?.pid;
  }
}

/** A lock was not available at once (`nowait`, `timeoutMs: 0`, Redis quorum not reached). */
export class LockNotAvailableError extends LockError {
  override readonly code: string = 'LOCK_NOT_AVAILABLE';
}

/** The database chose this transaction as a deadlock victim (PG 40P01, MySQL 1213). */
export class DeadlockError extends LockError {
  override readonly code: string = 'DEADLOCK';
}

/** A serialization failure (PG 40001): safe to retry the whole transaction. */
export class SerializationError extends LockError {
  override readonly code: string = 'SERIALIZATION_FAILURE';
}

/** An optimistic write found the row changed (or gone) since it was loaded. */
export class StaleEntityError extends LockError {
  override readonly code: string = 'STALE_ENTITY';
  readonly expectedVersion?: unknown;
  readonly actualVersion?: unknown;
  constructor(message: string, details: LockErrorDetails & { expectedVersion?: unknown; actualVersion?: unknown } = {}) {
    super(message, details);
    this.expectedVersion = details.expectedVersion;
    this.actualVersion = details.actualVersion;
  }
}

/** The operation must run inside a transaction and none is open. */
export class TransactionRequiredError extends LockError {
  override readonly code: string = 'TRANSACTION_REQUIRED';
}

/** A decorator, option or key is invalid, or the database cannot honour it. */
export class LockConfigError extends LockError {
  override readonly code: string = 'LOCK_CONFIG';
}

/** A held lock was lost (connection dropped, lease expired or taken). */
export class LockLostError extends LockError {
  override readonly code: string = 'LOCK_LOST';
}

/** A unique-constraint violation (PG 23505, MySQL 1062) converted for createOrFind. */
export class UniqueViolationError extends LockError {
  override readonly code: string = 'UNIQUE_VIOLATION';
}

/**
 * A call that already holds a pool connection needed a second one (`requires_new`, a session
 * lock) and none could be had within the installation's `connectionTimeoutMs`: waiting longer
 * could wait forever (every connection held by callers waiting for one more).
 */
export class PoolExhaustedError extends LockError {
  override readonly code: string = 'POOL_EXHAUSTED';
}

/** The operation must not run inside a transaction and one is open (`propagation: 'never'`). */
export class TransactionNotAllowedError extends LockError {
  override readonly code: string = 'TRANSACTION_NOT_ALLOWED';
}
