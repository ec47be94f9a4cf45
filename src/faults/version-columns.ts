/**
 * The faults of `@Versioned` entities that have no version to check (the adapters' install-time
 * checks, a MikroORM flush of an entity without its version value). One factory per fault, one
 * wording; the caller throws what it returns.
 */
import { LockConfigError, type LockErrorDetails } from '../errors';

/** `@Versioned` on an entity without a version column; `table` names it for the migration helper. */
export function noVersionColumn(subject: string, entity: string, table: string): LockConfigError {
  return new LockConfigError(
    `${subject}: the entity has no @VersionColumn, so there is no version to check. Add one, e.g. ` +
      '`@VersionColumn() version!: number`; for a table that already has rows, add the column with a default first ' +
      `(migration helper: addVersionColumn(queryRunner, '${table}')).`,
    { entity },
  );
}

/** `@Versioned` on a view or a table without a primary key. */
export function versionedWithoutKey(subject: string, entity: string, tableType: string): LockConfigError {
  return new LockConfigError(`${subject}: only tables with a primary key can be versioned (this is a ${tableType} without one).`, { entity });
}

/**
 * A checked write (`write`: `flush`, `save()`, `remove()` …) of a `@Versioned` entity that carries no
 * version value (`property`): its `statement` (update or delete) would be unconditional. `load` says
 * how to get the loaded entity with this ORM, `unconditional` the call for a deliberate unchecked write.
 */
export function noVersionValue(
  write: string,
  entity: string,
  id: string,
  property: string,
  statement: string,
  load: string,
  unconditional: string,
  details: LockErrorDetails,
): LockConfigError {
  return new LockConfigError(
    `${write} of @Versioned ${entity} ${id}: the entity has no ${property} value, so there is no version to check and the ${statement} would be ` +
      `unconditional. ${load}, or set its ${property} to the version you read; for a deliberate unconditional write use ${unconditional} ` +
      "with @Versioned({ uncheckedWrites: 'allow' }).",
    details,
  );
}

/** `@Versioned` on a MikroORM entity without a version property (the counterpart of noVersionColumn, in MikroORM's terms). */
export function noVersionProperty(subject: string, entity: string): LockConfigError {
  return new LockConfigError(
    `${subject}: the entity has no version property, so there is no version to check. Add one, e.g. ` +
      '`@Property({ version: true }) version!: number` (for a table that already has rows, add the column with a default first).',
    { entity },
  );
}
