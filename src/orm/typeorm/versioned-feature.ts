import { noVersionColumn, versionedWithoutKey } from '../../faults/version-columns';
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
      throw noVersionColumn(subject, entity.name, entity.tableName);
    }
    if (entity.tableType === 'view' || entity.primaryColumns.length === 0) {
      throw versionedWithoutKey(subject, entity.name, entity.tableType);
    }
  },
};
