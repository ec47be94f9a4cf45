/**
 * The faults of row locks (src/locks/row-lock.ts, pessimistic.ts, the dialects' row-lock check):
 * a lock the database cannot take as asked, an entity that cannot be locked, a lock without a
 * transaction, a row gone or locked, a read a `@Pessimistic` method cannot lock. One factory per
 * fault, one wording for every ORM; the caller throws what it returns. Shared faults (a wrong
 * argument or option) are in ./options.
 */
import { LockConfigError, LockNotAvailableError, LockTimeoutError, StaleEntityError, TransactionRequiredError, type LockErrorDetails } from '../errors';

/** The dialect cannot honour `what` of a row lock (a mode, `onLocked`, a locked read with joins); `hint` says what to do. */
export function rowLockUnsupported(subject: string, what: string, dialect: string, hint: string): LockConfigError {
  return new LockConfigError(`${subject}: ${what} is not supported on ${dialect}. ${hint}`, { entity: subject });
}

/** A plain object given as an entity is no entity of any installed ORM instance; `error` is the installation's own refusal. */
export function plainObjectNotAnEntity(caller: string, error: LockConfigError): LockConfigError {
  return new LockConfigError(
    `${caller}: a plain object is not an entity of any ORM instance (it is no instance of an entity class); make it with repository.create({ … }) or new Entity(), or load it with find*(). ${error.message}`,
  );
}

/** The entity to lock has no primary-key value yet. */
export function noPrimaryKeyValue(caller: string, entity: string): LockConfigError {
  return new LockConfigError(`${caller}: the entity has no primary-key value; save or load it before locking.`, { entity });
}

/** A row lock of `entity` with no transaction open (on the installation labelled `label`). */
export function rowLockWithoutTransaction(subject: string, entity: string, label: string): TransactionRequiredError {
  return new TransactionRequiredError(
    `${subject}: locking ${entity} needs a transaction on ${label}: a row lock ends with its transaction. Use withLock(entity, fn), transaction(fn) or @Transactional().`,
    { entity },
  );
}

/** The row to lock no longer exists. */
export function rowGone(subject: string, entity: string, id: unknown): StaleEntityError {
  return new StaleEntityError(`${subject}: the row no longer exists`, { entity, id });
}

/** `onLocked: 'skip_locked'` and the row is locked by another transaction. */
export function rowLockedSkipped(subject: string, entity: string, id: unknown): LockNotAvailableError {
  return new LockNotAvailableError(`${subject}: the row is locked (skip_locked)`, { entity, id });
}

/** A row lock timeout, with the backends holding the row (`who`: `pid … (query)`, PostgreSQL) added. */
export function rowLockTimeoutHeldBy(error: LockTimeoutError, who: string, details: LockErrorDetails): LockTimeoutError {
  return new LockTimeoutError(`${error.message}; held by ${who}`, details);
}

/** The refusal of a read a `@Pessimistic` method covers but no row lock can make exact. */
export function unlockableRead(source: string, call: string, entity: string, why: string): LockConfigError {
  return new LockConfigError(
    `${source}: ${call} on ${entity} cannot be locked (${why}). Read the rows with find()/getMany() (they are locked), ` +
      'or serialize the whole check with lock(parent) or withAdvisoryLock(key).',
    { entity, method: source, call },
  );
}
