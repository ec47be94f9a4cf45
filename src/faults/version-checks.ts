/**
 * The faults of the version check of a `@Versioned` save, remove or flush (the adapters'
 * persistence patches): a row that moved on or went away since the entity was loaded, a driver that
 * does not say how many rows a checked statement wrote. One factory per fault, one wording; the
 * caller throws what it returns. (Writes by criteria: ./versioned; an entity without a version: ./version-columns.)
 */
import { LockConfigError, StaleEntityError, type LockErrorDetails } from '../errors';

/**
 * A checked save/remove (`operation`) of `entity` `id`, loaded at version `expected`, found its row
 * moved on; `what` says how (`the row is now at version 3`, …), `rest` notes a statement that covered several rows.
 */
export function staleWrite(
  entity: string,
  id: unknown,
  expected: unknown,
  what: string,
  operation: string,
  rest: string,
  details: LockErrorDetails,
): StaleEntityError {
  return new StaleEntityError(
    `${entity} ${JSON.stringify(id)} is stale: it was loaded at version ${String(expected)} but ${what}; ` +
      `the ${operation} wrote nothing${rest}. Reload it and apply the change again (e.g. with @RetryOnConflict() around the method).`,
    details,
  );
}

/** save() of a loaded `@Versioned` object whose row no longer exists: saving would insert it again. */
export function staleRowGone(entity: string, id: unknown, expected: unknown): StaleEntityError {
  return new StaleEntityError(
    `${entity} ${JSON.stringify(id)} is stale: it was loaded at version ${String(expected)} but its row no longer exists ` +
      '(deleted by someone else); nothing was written. Saving it would insert it again.',
    { entity, id, expectedVersion: expected, actualVersion: undefined, deleted: true },
  );
}

/**
 * A flush's checked UPDATE or DELETE (`statement`) of `expected` rows of `entity` (ids `ids`) wrote
 * `affected`: the others no longer had the `property` they were loaded with.
 */
export function staleFlush(
  entity: string,
  ids: readonly unknown[],
  expected: number,
  affected: number,
  property: string,
  statement: 'UPDATE' | 'DELETE',
  details: LockErrorDetails,
): StaleEntityError {
  const many = ids.length > 1;
  return new StaleEntityError(
    `${entity} ${JSON.stringify(many ? ids : ids[0])} ${many ? 'are' : 'is'} stale: ${expected - affected} of ${expected} row(s) no longer had ` +
      `the ${property} they were loaded with (changed or deleted by a concurrent transaction); the flush wrote nothing` +
      `${many ? ` (one batched ${statement} covered ${expected} ${entity} rows: its transaction rolls back)` : ''}. ` +
      'Reload and apply the change again (e.g. with @RetryOnConflict() around the method).',
    details,
  );
}

/** The database driver did not report the rows a checked statement wrote, so the version check cannot work. */
export function noAffectedRows(entity: string): LockConfigError {
  return new LockConfigError(`@Versioned ${entity}: the database driver did not report affected rows; the version check cannot work.`, { entity });
}
