import type { EntityMetadata, EntitySubscriberInterface, LoadEvent } from 'typeorm';
import { SubjectDatabaseEntityLoader } from 'typeorm/persistence/SubjectDatabaseEntityLoader';
import { lockMetadataOf } from '../../../metadata/registry';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';

type ColumnMetadata = EntityMetadata['columns'][number];

/**
 * `save()` of a loaded `@Versioned` object without TypeORM's re-read. TypeORM reads the row
 * again before every update to diff the object against it; for a versioned object the UPDATE's
 * `WHERE version = <loaded>` already proves the row is as it was loaded (or writes nothing and
 * throws StaleEntityError), so the diff can be made against the values the object was loaded
 * with. Those are kept when TypeORM loads the object (after its afterLoad listeners and the
 * user's subscribers, as the re-read copy would have them) and handed to TypeORM's own diff as
 * the "database entity"; the UPDATE, its version check, listeners and subscribers stay TypeORM's
 * and ormlock's as before.
 *
 * Only where the loaded values are all a diff needs: entities without relations or inheritance,
 * whose loaded values (after their transformers) are scalars or dates (copied); an object whose version or a
 * column it did not load was set since, or that holds no change (a stale object saved unchanged is
 * still a conflict, which only the row can tell), goes TypeORM's way (re-read). After an UPDATE
 * (successful or stale) of the object by TypeORM's path the snapshot is dropped: its next save
 * re-reads. The one-statement save of versioned-fast-save.ts takes a fresh one after a successful
 * UPDATE when the object held every column and the update date was read back (the object is then the row).
 */

interface Snapshot {
  readonly version: unknown;
  readonly values: readonly unknown[];
}

/** Entity object → the values it was loaded with (columns in `eligibleColumns(meta)` order). */
const snapshots = new WeakMap<object, Snapshot>();
/** Per entity: the columns a snapshot holds, or null when its saves must re-read. */
const plans = new WeakMap<EntityMetadata, ColumnMetadata[] | null>();

function eligibleColumns(meta: EntityMetadata): ColumnMetadata[] | null {
  let columns = plans.get(meta);
  if (columns === undefined) {
    const ok =
      typeof meta.target === 'function' &&
      lockMetadataOf(meta.target)?.versioned !== undefined &&
      meta.versionColumn !== undefined &&
      meta.tableType === 'regular' &&
      !meta.inheritancePattern &&
      !meta.treeType &&
      meta.relations.length === 0 &&
      // a transformer's loaded value is what the re-read would give too (it is copied only when a scalar or a date);
      // not on the key or the version, which the diff and the check compare as they are
      meta.columns.every((c) => !c.relationMetadata && !(c.transformer && (c.isPrimary || c.isVersion)));
    columns = ok ? meta.columns.filter((c) => !c.isVirtual && !c.isDiscriminator) : null;
    plans.set(meta, columns);
  }
  return columns;
}

/** What `copyOf` answers for a value a snapshot cannot hold. */
const NOT_COPIED = Symbol('not copied');

/** A copy the user's later changes to the object cannot reach; NOT_COPIED when the value is not one a snapshot can hold. */
function copyOf(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return typeof value === 'function' || typeof value === 'symbol' ? NOT_COPIED : value;
  if (value instanceof Date) return new Date(value.getTime());
  return NOT_COPIED;
}

/** Remembers the values `entity` was loaded with, when its entity can save without a re-read. */
export function rememberLoaded(entity: unknown, meta: EntityMetadata | undefined): void {
  if (!meta || entity === null || typeof entity !== 'object') return;
  const columns = eligibleColumns(meta);
  if (!columns) return;
  const values: unknown[] = [];
  for (const column of columns) {
    const copy = copyOf(column.getEntityValue(entity));
    if (copy === NOT_COPIED) return snapshots.delete(entity) as unknown as void;
    values.push(copy);
  }
  snapshots.set(entity, { version: meta.versionColumn!.getEntityValue(entity), values });
}

/** The object was written (or its write found it stale): its next save re-reads. */
export function forgetLoaded(entity: object): void {
  snapshots.delete(entity);
}

/** The row as `entity` was loaded, as TypeORM's re-read would give it; undefined when the re-read is needed. */
function loadedRow(subject: any): object | undefined {
  const entity = subject.entity;
  if (!entity || subject.databaseEntity || !subject.identifier) return undefined;
  return loadedState(entity, subject.metadata)?.row;
}

/**
 * What `entity` was loaded with, as TypeORM's re-read would give the row (`row`), when a save may
 * diff against it: a snapshot is held, the version is the loaded one, no column it did not load
 * was set since, and something changed (else undefined: the re-read decides). `complete`: the
 * snapshot holds every column (none was left out of the SELECT).
 */
export function loadedState(entity: object, meta: EntityMetadata): { row: object; complete: boolean } | undefined {
  const snapshot = snapshots.get(entity);
  if (!snapshot) return undefined;
  const columns = eligibleColumns(meta);
  if (!columns) return undefined;
  if (meta.versionColumn!.getEntityValue(entity) !== snapshot.version) return undefined; // the version was set by hand
  let changed = false;
  let complete = true;
  for (let i = 0; i < columns.length; i++) {
    const now = columns[i].getEntityValue(entity);
    const then = snapshot.values[i];
    if (then === undefined) complete = false;
    // a column the object did not load (select, select: false) but holds now: only the row can say whether it changed
    if (then === undefined && now !== undefined) return undefined;
    if (!changed && now !== undefined && !same(now, then)) changed = true;
  }
  // unchanged: the re-read decides (a stale object saved without changes is still a conflict)
  if (!changed) return undefined;
  const row = meta.create(undefined, { fromDeserializer: true } as never);
  for (let i = 0; i < columns.length; i++) {
    if (snapshot.values[i] !== undefined) columns[i].setEntityValue(row, snapshot.values[i]);
  }
  return { row, complete };
}

function same(a: unknown, b: unknown): boolean {
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  return a === b;
}

/** Keeps the loaded values of `@Versioned` objects (after the entity's listeners and the user's subscribers). */
export class VersionedSnapshotSubscriber implements EntitySubscriberInterface {
  afterLoad(entity: unknown, event?: LoadEvent<any>) {
    rememberLoaded(entity, event?.metadata);
  }
}

const loader = SubjectDatabaseEntityLoader.prototype as any;

/** `SubjectDatabaseEntityLoader.load('save')`: subjects with a usable snapshot get it as their database entity (no SELECT). */
export const versionedLoadPatch: InternalPatch = {
  name: 'SubjectDatabaseEntityLoader.prototype.load (@Versioned saves without the re-read)',
  probe: () => expectMethod(loader, 'SubjectDatabaseEntityLoader.prototype', 'load', ['databaseEntity', 'databaseEntityLoaded']),
  apply() {
    return replaceMethod(
      loader,
      'load',
      (base) =>
        function (this: { subjects: any[] }, operationType: string, ...rest: unknown[]) {
          if (operationType === 'save') {
            for (const subject of this.subjects) {
              const row = loadedRow(subject);
              if (!row) continue;
              subject.databaseEntity = row;
              subject.databaseEntityLoaded = true;
            }
          }
          return base.call(this, operationType, ...rest);
        },
    );
  },
};
