import { LockConfigError } from '../../errors';
import type { TypeOrmFeature } from './feature';
import { VersionedSnapshotSubscriber } from './internals/versioned-snapshots';

/**
 * `@Versioned()`: validates that the entity has a `@VersionColumn`, and installs the version
 * check into TypeORM's persistence layer (patch-persistence.ts, inert for everything else).
 * The check is in the UPDATE's / DELETE's WHERE; its subscriber keeps the values a versioned
 * object was loaded with, so that its save() needs no re-read (internals/versioned-snapshots.ts).
 */
export const versionedFeature: TypeOrmFeature = {
  name: 'versioned',
  subscribers: () => [new VersionedSnapshotSubscriber()],
  validate(entity, declared) {
    if (!declared.versioned) return;
    const subject = `@Versioned on ${entity.name}`;
    if (!entity.versionColumn) {
      throw new LockConfigError(
        `${subject}: the entity has no @VersionColumn, so there is no version to check. Add one, e.g. ` +
          '`@VersionColumn() version!: number`; for a table that already has rows, add the column with a default first ' +
          `(migration helper: addVersionColumn(queryRunner, '${entity.tableName}')).`,
        { entity: entity.name },
      );
    }
    if (entity.tableType === 'view' || entity.primaryColumns.length === 0) {
      throw new LockConfigError(`${subject}: only tables with a primary key can be versioned (this is a ${entity.tableType} without one).`, {
        entity: entity.name,
      });
    }
  },
};
