import { optionsProblems } from '../arguments';
import { badOption, badOptions } from '../faults/options';
import { declare, lockMetadataOf, type VersionedOptions } from '../metadata/registry';

export type { VersionedOptions } from '../metadata/registry';

const VERSIONED_OPTIONS = ['uncheckedWrites'] as const;

/** True when `entityClass` is `@Versioned` and refuses writes that check no version (uncheckedWrites is not 'allow'). */
export function refusesUncheckedWrites(entityClass: unknown): boolean {
  if (typeof entityClass !== 'function') return false;
  const declared = lockMetadataOf(entityClass)?.versioned;
  return declared !== undefined && declared.uncheckedWrites !== 'allow';
}

/**
 * The plain-function twin of `@Versioned()`: marks an entity class (which must have a
 * `@VersionColumn`, checked at `installLocking`) so that every `save()` (update) and `remove()`
 * of a loaded object writes only if the row still has the object's version
 * (`… WHERE id = ? AND version = ?`, affected rows checked), and otherwise throws
 * `StaleEntityError` having written nothing.
 *
 * Writes that check no version (`update()`, `delete()`, `upsert()`, `increment()`, query-builder
 * updates and deletes; MikroORM `nativeUpdate/nativeDelete/upsert`) are refused with
 * LockConfigError, unless `uncheckedWrites: 'allow'`.
 *
 * ```ts
 * versioned(Counter);   // same as @Versioned() on the class (after installLocking too: validated then)
 * versioned(AuditRow, { uncheckedWrites: 'allow' });   // repository.update(…) writes unchecked, deliberately
 * ```
 */
export function versioned(entityClass: Function, options: VersionedOptions = {}): void {
  if (typeof entityClass !== 'function') {
    throw badOption('@Versioned / versioned(entityClass, options?)', 'entityClass', 'an entity class', entityClass);
  }
  const subject = `@Versioned on ${entityClass.name}`;
  const problems = optionsProblems(options, VERSIONED_OPTIONS);
  if (problems.length) throw badOptions(subject, problems, { entity: entityClass.name });
  const unchecked = options.uncheckedWrites;
  if (unchecked !== undefined && unchecked !== 'refuse' && unchecked !== 'allow') {
    throw badOption(subject, 'uncheckedWrites', "'refuse' or 'allow'", unchecked, { entity: entityClass.name, option: 'uncheckedWrites' });
  }
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
