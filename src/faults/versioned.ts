/**
 * The faults of `@Versioned` writes that check no version (an update, delete or upsert by criteria:
 * it writes whatever version the row has, so a concurrent change is overwritten unnoticed). One
 * factory, one wording for every ORM and entry point; the caller throws what it returns.
 */
import { LockConfigError } from '../errors';

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
