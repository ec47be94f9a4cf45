/**
 * The faults of `@Versioned` writes beside save()/flush: a write that checks no version (an update,
 * delete or upsert by criteria: it writes whatever version the row has, so a concurrent change is
 * overwritten unnoticed), and a write by primary key and version that found the row moved on. One
 * factory per fault, one wording for every ORM and entry point; the caller throws what it returns.
 */
import { LockConfigError, StaleEntityError } from '../errors';

/**
 * `call` on the @Versioned `entity` would write without checking the version; `instead` names the
 * checked way for this ORM. Thrown before any statement: nothing was written.
 */
export function uncheckedVersionedWrite(entity: string, call: string, instead: string): LockConfigError {
  return new LockConfigError(
    `@Versioned ${entity}: ${call} checks no version (it writes whatever version the row has, so it would overwrite a concurrent ` +
      `change unnoticed); nothing was written. Use ${instead}; or, to allow unchecked writes of ${entity} deliberately, declare ` +
      `@Versioned({ uncheckedWrites: 'allow' }) (versioned(${entity}, { uncheckedWrites: 'allow' })).`,
    { entity, call },
  );
}

/**
 * A write by criteria that named the row's primary key and its version (`update({ id, version: 3 }, …)`)
 * found no such row: the row moved on (or went away) since that version was read. Nothing was written.
 */
export function staleCriteriaWrite(entity: string, id: unknown, expectedVersion: unknown, call: string): StaleEntityError {
  return new StaleEntityError(
    `${entity} ${JSON.stringify(id)} is stale: ${call} named version ${String(expectedVersion)}, but the row no longer has it ` +
      `(changed or deleted by a concurrent transaction); it wrote nothing. Read the row again and apply the change again ` +
      '(e.g. with @RetryOnConflict() around the method).',
    { entity, id, expectedVersion },
  );
}
