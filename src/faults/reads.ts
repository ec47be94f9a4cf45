/**
 * The faults of locked reads through the ORM's own API (MikroORM's `em.find*` under `@Pessimistic`
 * methods): a read that would not be locked, a locked read without a transaction. One factory per
 * fault, one wording; the caller throws what it returns.
 */
import { LockConfigError, TransactionRequiredError } from '../errors';

/** A locked read of `entity` with no transaction open. */
export function lockedReadWithoutTransaction(entity: string): TransactionRequiredError {
  return new TransactionRequiredError(`A locked read of ${entity} needs a transaction: use transaction(), withLock() or @Transactional().`, { entity });
}

/** A read `source` should lock would run unlocked; `why` says where it went. */
export function readNotLocked(source: string, entity: string, why: string): LockConfigError {
  return new LockConfigError(`${source}: a read of ${entity} would not be locked: ${why}.`, { entity, method: source });
}
