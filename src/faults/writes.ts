/**
 * The faults of writes ormlock guards, whatever the feature (`@AroundCreate`, `@LockedTree`, the
 * locks of a MikroORM flush): a write where what it must hold cannot be held, or where ormlock is
 * not installed. One factory per fault, one wording for every ORM; the caller throws what it returns.
 */
import { LockConfigError, TransactionRequiredError, type LockErrorDetails } from '../errors';

/** `write` runs outside a transaction, so `held` would end with its statement, not at COMMIT; `fix` says how to give it one. */
export function writeOutsideTransaction(subject: string, write: string, held: string, fix: string, details: LockErrorDetails): TransactionRequiredError {
  return new TransactionRequiredError(`${subject}: ${write} runs outside a transaction, so ${held} could not be held until it commits; ${fix}.`, details);
}

/** `entity`, declared `declared`, is written through `where`, an ORM instance without ormlock: nothing is written. */
export function writtenWhereNotInstalled(entity: string, declared: string, where: string, install: string, details: LockErrorDetails): LockConfigError {
  return new LockConfigError(
    `${entity} is declared ${declared}, but it is being written through ${where}, where ormlock is not installed: its locks and checks ` +
      `cannot be taken there. Call ${install}, or write through the installed one. Nothing was written.`,
    details,
  );
}

/** The `fix` of a TypeORM save or remove given `{ transaction: false }`. */
export const DROP_NO_TRANSACTION = 'drop { transaction: false } or wrap the work in transaction(…)';

/**
 * The refusal of a write to an entity with `@AdvisoryLock(entity => key)` whose rows cannot be
 * known before it runs, so no key can be computed (one wording for every ORM and entry point):
 * `write` names the call, `why` says why its rows are unknown, `instead` what to call.
 */
export function advisoryKeyUnknown(entity: string, write: string, why: string, instead: string): LockConfigError {
  return new LockConfigError(
    `@AdvisoryLock on ${entity}: this ${write} has no entity to compute the lock key from (${why}); use ${instead}, ` +
      'or take the lock yourself with withAdvisoryLock()',
    { entity, call: write },
  );
}
