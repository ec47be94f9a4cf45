/**
 * The faults of `@Versioned` entities that have no version to check (the adapters' install-time
 * checks, a MikroORM flush of an entity without its version value). One factory per fault, one
 * wording; the caller throws what it returns.
 */
import { LockConfigError } from '../errors';

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

/** A flush of a `@Versioned` MikroORM entity that carries no version value (`property`): the update would be unconditional. */
export function noVersionValue(entity: string, id: string, property: string): LockConfigError {
  return new LockConfigError(
    `flush of @Versioned ${entity} ${id}: the entity has no ${property} value, so there is no version to check and the update would be ` +
      `unconditional. Load it (em.findOne) and change the loaded entity, or set its ${property} to the version you read; for a deliberate ` +
      "unconditional write use em.nativeUpdate() with @Versioned({ uncheckedWrites: 'allow' }).",
    { entity },
  );
}
