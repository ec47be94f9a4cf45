import { describeValue, optionsProblems } from '../arguments';
import { LockConfigError } from '../errors';
import { declare, type VersionedOptions } from '../metadata/registry';

export type { VersionedOptions } from '../metadata/registry';

/**
 * The plain-function twin of `@Versioned()`: marks an entity class (which must have a
 * `@VersionColumn`, checked at `installLocking`) so that every `save()` (update) and `remove()`
 * of a loaded object writes only if the row still has the object's version
 * (`… WHERE id = ? AND version = ?`, affected rows checked), and otherwise throws
 * `StaleEntityError` having written nothing.
 *
 * ```ts
 * versioned(Counter);   // same as @Versioned() on the class (after installLocking too: validated then)
 * ```
 */
export function versioned(entityClass: Function, options: VersionedOptions = {}): void {
  if (typeof entityClass !== 'function') {
    throw new LockConfigError(`@Versioned / versioned(entityClass, options?): expected an entity class (got ${describeValue(entityClass)})`);
  }
  const problems = optionsProblems(options);
  if (problems.length) throw new LockConfigError(`@Versioned on ${entityClass.name}: ${problems.join('; ')}`, { entity: entityClass.name });
  declare(entityClass, (rec) => (rec.versioned = { ...options }));
}

/**
 * The version a row has after one `SET version = version + 1`, in the type the object holds it
 * (number; bigint; or the decimal string PostgreSQL returns for bigint columns).
 */
export function nextVersion(version: unknown): unknown {
  if (typeof version === 'number') return version + 1;
  if (typeof version === 'bigint') return version + 1n;
  if (typeof version === 'string' && /^-?\d+$/.test(version)) return String(BigInt(version) + 1n);
  return version;
}
