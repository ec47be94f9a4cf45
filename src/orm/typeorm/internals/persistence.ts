import { DeleteQueryBuilder, UpdateQueryBuilder, type EntityManager, type EntityMetadata, type ObjectLiteral, type QueryRunner } from 'typeorm';
type ColumnMetadata = EntityMetadata['columns'][number];
import { SubjectExecutor } from 'typeorm/persistence/SubjectExecutor';
import { SoftDeleteQueryBuilder } from 'typeorm/query-builder/SoftDeleteQueryBuilder';
import type { StaleEntityError } from '../../../errors';
import { noVersionValue } from '../../../faults/version-columns';
import { noAffectedRows, staleRowGone, staleWrite } from '../../../faults/version-checks';
import { nextVersion } from '../../../locks/optimistic';
import { lockMetadataOf } from '../../../metadata/registry';
import { installationOf } from '../../../installations';
import { dataSourceOf } from '../compat';
import { onPrimary } from '../primary';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';
import { forgetLoaded } from './versioned-snapshots';

/**
 * The version check of `@Versioned` entities, in TypeORM's persistence layer.
 *
 * TypeORM's `save()` re-reads the row, diffs it against the object and writes the diff; for a
 * stale object the diff contains the stale version, which it writes back (TypeORM issues
 * 2848, 3608). Here, for subjects of `@Versioned` entities that the user holds (a loaded
 * object), the UPDATE/DELETE that TypeORM builds gets `AND version = <the object's version>`
 * and its affected-row count is checked; 0 rows means the row changed (or went away) since
 * the object was loaded: `StaleEntityError`, and nothing was written. `softRemove()` and
 * `recover()` of a loaded object (an UPDATE of the delete-date column) are checked the same way.
 *
 * Every hook is inert unless ormlock registered the subject: the executor wrappers register the
 * identifier objects of versioned subjects (a WeakMap keyed by object identity) just before
 * TypeORM passes exactly those objects to `whereEntity()` / `where()`, and remove them after.
 * Tree handling, listeners, cascades and ordering stay TypeORM's own.
 */

export interface VersionCheck {
  readonly metadata: EntityMetadata;
  readonly versionColumn: ColumnMetadata;
  /** The version of the user's object: what the row must still have. */
  readonly expected: unknown;
  /** The user's object. */
  readonly entity: ObjectLiteral;
  readonly identifier: ObjectLiteral;
}

/** Marker on an UpdateQueryBuilder's / DeleteQueryBuilder's expressionMap. */
const UPDATE_CHECK = Symbol('ormlock.versionCheck.update');
const DELETE_CHECK = Symbol('ormlock.versionCheck.delete');
const SOFT_CHECK = Symbol('ormlock.versionCheck.softDelete');
const EXPECTED_PARAM = 'ormlock_expected_version';

interface UpdateMark {
  check: VersionCheck;
  /** What TypeORM wanted: reload version/update-date columns into the entity. */
  reload: boolean;
  /** Columns to read back after a successful UPDATE on drivers without RETURNING (besides the version). */
  reloadColumns: ColumnMetadata[];
}

interface DeleteMark {
  checks: VersionCheck[];
  /** Rows the DELETE must remove (all subjects of the statement). */
  expectedRows: number;
}

/** identifier object (TypeORM's subject.identifier) → the check for that subject. */
const registered = new WeakMap<object, VersionCheck>();

const executor = SubjectExecutor.prototype as any;
const update = UpdateQueryBuilder.prototype as any;
const del = DeleteQueryBuilder.prototype as any;
const softDel = SoftDeleteQueryBuilder.prototype as any;

/** What the version check guards: save() (update), remove() (delete), softRemove() / recover() (an update of the delete date). */
type Operation = 'save' | 'remove' | 'softRemove' | 'recover';

/** The version check's hooks (see the file comment), behind one probe. */
export const persistencePatches: readonly InternalPatch[] = [
  {
    name: 'SubjectExecutor / UpdateQueryBuilder / DeleteQueryBuilder / SoftDeleteQueryBuilder (the @Versioned check)',
    probe: () => [
      ...expectMethod(executor, 'SubjectExecutor.prototype', 'executeInsertOperations', ['insertSubjects']),
      ...expectMethod(executor, 'SubjectExecutor.prototype', 'executeUpdateOperations', ['updateSubjects', 'whereEntity']),
      ...expectMethod(executor, 'SubjectExecutor.prototype', 'executeRemoveOperations', ['removeSubjects']),
      ...expectMethod(executor, 'SubjectExecutor.prototype', 'executeSoftRemoveOperations', ['softRemoveSubjects', 'whereEntity']),
      ...expectMethod(executor, 'SubjectExecutor.prototype', 'executeRecoverOperations', ['recoverSubjects', 'whereEntity']),
      ...expectMethod(update, 'UpdateQueryBuilder.prototype', 'whereEntity'),
      ...expectMethod(update, 'UpdateQueryBuilder.prototype', 'execute', ['UpdateResult']),
      ...expectMethod(del, 'DeleteQueryBuilder.prototype', 'where'),
      ...expectMethod(del, 'DeleteQueryBuilder.prototype', 'execute', ['DeleteResult']),
      ...expectMethod(softDel, 'SoftDeleteQueryBuilder.prototype', 'whereEntity'),
      ...expectMethod(softDel, 'SoftDeleteQueryBuilder.prototype', 'execute', ['UpdateResult']),
    ],
    apply() {
      return applyPersistence();
    },
  },
];

/**
 * A step of SubjectExecutor whose subject lists are all empty writes nothing and has nothing to
 * check: TypeORM's own step runs, without the wrapper's work (every save() calls all five steps;
 * saving a loaded object has subjects in one of them).
 */
function unlessEmpty(lists: readonly string[], base: (this: any) => Promise<void>, checked: (this: any) => Promise<void>): (this: any) => Promise<void> {
  return function (this: any) {
    for (const list of lists) {
      const subjects = this[list];
      if (!Array.isArray(subjects) || subjects.length > 0) return checked.call(this);
    }
    return base.call(this);
  };
}

function applyPersistence(): () => void {
  const undo: Array<() => void> = [];
  const patch = (owner: object, method: string, wrap: (base: any) => any) => undo.push(replaceMethod(owner, method, wrap));
  patch(executor, 'executeInsertOperations', (baseInsertOps) =>
    // no row inserted or removed: no junction row either, so no collection owner to bump
    unlessEmpty(['insertSubjects', 'removeSubjects'], baseInsertOps, async function (this: any) {
      if (installationOf(dataSourceOf(this.queryRunner))) {
        for (const subject of this.insertSubjects) refuseResurrection(subject);
        // before any junction row is written: an owned ManyToMany change moves the owner's version
        for (const owner of collectionOwners(this)) await bumpCollectionOwner(this, owner);
      }
      return baseInsertOps.call(this);
    }),
  );

  patch(executor, 'executeUpdateOperations', (baseUpdateOps) =>
    unlessEmpty(['updateSubjects'], baseUpdateOps, async function (this: any) {
      if (!installationOf(dataSourceOf(this.queryRunner))) return baseUpdateOps.call(this);
      const justInserted = new Set(this.insertSubjects);
      const keys: object[] = [];
      try {
        for (const subject of this.updateSubjects) {
          if (justInserted.has(subject)) continue; // inserted in this very flush: nobody else can have changed it
          const check = versionCheckOf(subject, 'save');
          if (!check) continue;
          // the diff holds the object's (stale) version when the row moved on: never write it back;
          // the UPDATE sets version = version + 1 itself
          const changes: Array<{ column?: ColumnMetadata }> = subject.changeMaps;
          for (let i = changes.length - 1; i >= 0; i--) if (changes[i].column === check.versionColumn) changes.splice(i, 1);
          registered.set(check.identifier, check);
          keys.push(check.identifier);
        }
        return await baseUpdateOps.call(this);
      } finally {
        for (const key of keys) registered.delete(key);
      }
    }),
  );

  // the statements of these steps are built for exactly the registered identifier objects
  const registering = (list: string, operation: Operation) => (baseOps: (this: any) => Promise<void>) =>
    unlessEmpty([list], baseOps, async function (this: any) {
      if (!installationOf(dataSourceOf(this.queryRunner))) return baseOps.call(this);
      const keys: object[] = [];
      try {
        for (const subject of this[list]) {
          const check = versionCheckOf(subject, operation);
          if (!check) continue;
          registered.set(check.identifier, check);
          keys.push(check.identifier);
        }
        return await baseOps.call(this);
      } finally {
        for (const key of keys) registered.delete(key);
      }
    });
  patch(executor, 'executeRemoveOperations', registering('removeSubjects', 'remove'));
  patch(executor, 'executeSoftRemoveOperations', registering('softRemoveSubjects', 'softRemove'));
  patch(executor, 'executeRecoverOperations', registering('recoverSubjects', 'recover'));

  patch(
    update,
    'whereEntity',
    (baseWhereEntity) =>
      function (this: UpdateQueryBuilder<any>, entity: unknown) {
        const result = baseWhereEntity.call(this, entity);
        const check = entity !== null && typeof entity === 'object' && !Array.isArray(entity) ? registered.get(entity) : undefined;
        if (!check) return result;
        const map = this.expressionMap as any;
        const { versionColumn: vcol } = check;
        this.andWhere(`${this.escape(vcol.databaseName)} = :${EXPECTED_PARAM}`, {
          [EXPECTED_PARAM]: dataSourceOf(this)!.driver.preparePersistentValue(check.expected, vcol),
        });
        // TypeORM would reload version/update-date with RETURNING or, without it, a SELECT after the
        // UPDATE. The check must see the affected count first, and the new version is known
        // (expected + 1), so the SELECT is only needed for other generated columns.
        const reload = map.updateEntity === true;
        const generated = check.metadata.columns.filter((c) => c.asExpression !== undefined || c.isUpdateDate || c.isVersion);
        let reloadColumns: ColumnMetadata[] = [];
        if (reload && generated.some((c) => c !== vcol)) {
          if (dataSourceOf(this)!.driver.isReturningSqlSupported('update')) map.returning = generated.map((c) => c.propertyPath);
          else reloadColumns = generated.filter((c) => c !== vcol);
        }
        map.updateEntity = false;
        map[UPDATE_CHECK] = { check, reload, reloadColumns } satisfies UpdateMark;
        return result;
      },
  );

  patch(
    update,
    'execute',
    (baseUpdateExecute) =>
      async function (this: UpdateQueryBuilder<any>) {
        const mark: UpdateMark | undefined = (this.expressionMap as any)[UPDATE_CHECK];
        if (!mark) return baseUpdateExecute.call(this);
        // the persistence layer's builders always carry its query runner (the transaction's)
        const manager = managerOf(this);
        const { check } = mark;
        forgetLoaded(check.entity); // written (or found stale): its loaded values are no longer the row's
        const result = await baseUpdateExecute.call(this);
        requireAffected(result, check.metadata);
        if (result.affected < 1) throw await staleError(manager, [check], 'save', result.affected);

        const generated: ObjectLiteral = {};
        const row = Array.isArray(result.raw) ? result.raw[0] : undefined;
        if (mark.reload && row && typeof row === 'object') {
          Object.assign(generated, dataSourceOf(this)!.driver.createGeneratedMap(check.metadata, row) ?? {});
        }
        if (mark.reloadColumns.length) {
          const reloaded = await readBackGenerated(manager, check.metadata, check.identifier, mark.reloadColumns);
          if (reloaded) Object.assign(generated, reloaded);
        }
        check.versionColumn.setEntityValue(generated, nextVersion(check.expected));
        result.generatedMaps.push(generated);
        return result;
      },
  );

  patch(
    del,
    'where',
    (baseDeleteWhere) =>
      function (this: DeleteQueryBuilder<any>, where: unknown, parameters?: ObjectLiteral) {
        if (!Array.isArray(where) || where.length === 0) return baseDeleteWhere.call(this, where, parameters);
        const checks: VersionCheck[] = [];
        const conditions = where.map((item) => {
          const check = item !== null && typeof item === 'object' ? registered.get(item) : undefined;
          if (!check) return item;
          checks.push(check);
          return mergeValueMap({ ...check.identifier }, check.versionColumn.createValueMap(check.expected));
        });
        if (checks.length === 0) return baseDeleteWhere.call(this, where, parameters);
        const result = baseDeleteWhere.call(this, conditions, parameters);
        (this.expressionMap as any)[DELETE_CHECK] = { checks, expectedRows: where.length } satisfies DeleteMark;
        return result;
      },
  );

  patch(
    del,
    'execute',
    (baseDeleteExecute) =>
      async function (this: DeleteQueryBuilder<any>) {
        const mark: DeleteMark | undefined = (this.expressionMap as any)[DELETE_CHECK];
        if (!mark) return baseDeleteExecute.call(this);
        const manager = managerOf(this);
        const result = await baseDeleteExecute.call(this);
        requireAffected(result, mark.checks[0].metadata);
        if (result.affected < mark.expectedRows) throw await staleError(manager, mark.checks, 'remove', result.affected);
        return result;
      },
  );

  // softRemove() / recover(): TypeORM's soft-delete builder of a registered subject gets the version
  // condition (its SET already moves the version and the delete date); its affected rows are checked
  patch(
    softDel,
    'whereEntity',
    (baseWhereEntity) =>
      function (this: SoftDeleteQueryBuilder<any>, entity: unknown) {
        const result = baseWhereEntity.call(this, entity);
        const check = entity !== null && typeof entity === 'object' && !Array.isArray(entity) ? registered.get(entity) : undefined;
        if (!check) return result;
        const vcol = check.versionColumn;
        this.andWhere(`${this.escape(vcol.databaseName)} = :${EXPECTED_PARAM}`, {
          [EXPECTED_PARAM]: dataSourceOf(this)!.driver.preparePersistentValue(check.expected, vcol),
        });
        (this.expressionMap as any)[SOFT_CHECK] = check;
        return result;
      },
  );

  patch(
    softDel,
    'execute',
    (baseSoftExecute) =>
      async function (this: SoftDeleteQueryBuilder<any>) {
        const check: VersionCheck | undefined = (this.expressionMap as any)[SOFT_CHECK];
        if (!check) return baseSoftExecute.call(this);
        const manager = managerOf(this);
        forgetLoaded(check.entity);
        const result = await baseSoftExecute.call(this);
        requireAffected(result, check.metadata);
        if (result.affected < 1)
          throw await staleError(manager, [check], (this.expressionMap as any).queryType === 'restore' ? 'recover' : 'softRemove', result.affected);
        return result;
      },
  );
  return () => {
    for (const u of undo.reverse()) u();
  };
}

/**
 * Subjects of @Versioned entities (loaded, not inserted in this flush) whose ManyToMany collections
 * this flush changes: the junction rows TypeORM will insert or delete name them as parent.
 */
function collectionOwners(executor: any): any[] {
  const inserted = new Set(executor.insertSubjects);
  const owners = new Set<any>();
  for (const junction of [...executor.insertSubjects, ...executor.removeSubjects]) {
    const owner = junction.parentSubject;
    if (!junction.metadata?.isJunction || !owner || inserted.has(owner) || owner.mustBeRemoved) continue;
    if (typeof owner.metadata?.target === 'function' && lockMetadataOf(owner.metadata.target)?.versioned) owners.add(owner);
  }
  return [...owners];
}

/**
 * An owned collection changed (as Hibernate does): `UPDATE … SET version = version + 1 WHERE id = ?
 * AND version = <loaded>`, checked like any update, before the junction rows are written — a stale
 * object can no longer drop a tag someone else added. The object gets the new version; when the
 * same flush also updates its columns, that update is checked against the new one.
 */
async function bumpCollectionOwner(executor: any, subject: any): Promise<void> {
  const check = versionCheckOf(subject, 'save');
  if (!check) return;
  registered.set(check.identifier, check);
  try {
    await (executor.queryRunner as QueryRunner).manager
      .createQueryBuilder()
      .update(check.metadata.target)
      .set({})
      .updateEntity(false)
      .callListeners(false)
      .whereEntity(check.identifier)
      .execute();
  } finally {
    registered.delete(check.identifier);
  }
  const next = nextVersion(check.expected);
  check.versionColumn.setEntityValue(check.entity, next);
  if (subject.databaseEntity) check.versionColumn.setEntityValue(subject.databaseEntity, next);
}

/** `result.affected`, which the check needs (PostgreSQL and MySQL drivers report it). */
export function requireAffected<R extends { affected?: number | null }>(result: R, metadata: EntityMetadata): asserts result is R & { affected: number } {
  if (result.affected === undefined || result.affected === null) {
    throw noAffectedRows(metadata.name);
  }
}

/**
 * Generated columns (the update date) of a row just updated, read back on drivers without
 * UPDATE … RETURNING, where TypeORM's save() would reload them.
 */
export function readBackGenerated(
  manager: EntityManager,
  metadata: EntityMetadata,
  identifier: ObjectLiteral,
  columns: ColumnMetadata[],
): Promise<ObjectLiteral | null> {
  const alias = 'ormlock_reload';
  return onPrimary(manager, (primary) =>
    primary
      .createQueryBuilder()
      .select(columns.map((c) => `${alias}.${c.propertyPath}`))
      .from(metadata.target, alias)
      .where(identifier)
      .withDeleted()
      .setOption('create-pojo')
      .getOne(),
  );
}

/** The StaleEntityError of a save() whose checked UPDATE (versioned-fast-save.ts) changed no row: the same as TypeORM's path gives. */
export function staleSave(manager: EntityManager, check: VersionCheck): Promise<StaleEntityError> {
  return staleError(manager, [check], 'save', 0);
}

/** The unconditional way to do what `operation` does, for the refusal of an object without a version. */
const UNCONDITIONAL: Record<Operation, string> = {
  save: 'repository.update(id, values)',
  remove: 'repository.delete(id)',
  softRemove: 'repository.softDelete(id)',
  recover: 'repository.restore(id)',
};

/** The check for a subject of a @Versioned entity the user holds, or undefined (TypeORM's own behaviour). */
function versionCheckOf(subject: any, operation: Operation): VersionCheck | undefined {
  const entity = subject.entity;
  const metadata: EntityMetadata = subject.metadata;
  if (!entity || !subject.identifier || typeof metadata.target !== 'function') return undefined;
  if (!lockMetadataOf(metadata.target)?.versioned) return undefined;
  const versionColumn = metadata.versionColumn;
  if (!versionColumn) return undefined; // installLocking refuses @Versioned without @VersionColumn
  const expected = versionColumn.getEntityValue(entity);
  if (expected === undefined || expected === null) {
    const id = JSON.stringify(metadata.getEntityIdMap(entity) ?? subject.identifier);
    const load = operation === 'save' ? 'Load it (repository.findOneBy(...)) and change the loaded object' : 'Load it first';
    throw noVersionValue(
      operation + '()',
      metadata.name,
      id,
      versionColumn.propertyPath,
      operation === 'remove' ? 'delete' : 'update',
      load,
      UNCONDITIONAL[operation],
      {
        entity: metadata.name,
        id: metadata.getEntityIdMap(entity) ?? subject.identifier,
      },
    );
  }
  return { metadata, versionColumn, expected, entity, identifier: subject.identifier };
}

/**
 * save() of a loaded @Versioned object whose row is gone: TypeORM would INSERT it again (a lost
 * delete). An object that carries a version and an id was loaded, so this is a conflict.
 */
function refuseResurrection(subject: any): void {
  const metadata: EntityMetadata = subject.metadata;
  if (!subject.entity || !subject.databaseEntityLoaded || subject.databaseEntity) return;
  if (typeof metadata.target !== 'function' || !lockMetadataOf(metadata.target)?.versioned) return;
  const vcol = metadata.versionColumn;
  const expected = vcol?.getEntityValue(subject.entity);
  if (expected === undefined || expected === null) return; // a new object
  const id = metadata.getEntityIdMap(subject.entity);
  throw staleRowGone(metadata.name, id, expected);
}

/**
 * Builds the StaleEntityError of a failed check. Only on this failure path, one SELECT reads the
 * row's current version for the message (in a MySQL REPEATABLE READ snapshot it may still show
 * the loaded version: then the current one is reported as unknown).
 */
async function staleError(manager: EntityManager, checks: VersionCheck[], operation: Operation, affected: number): Promise<StaleEntityError> {
  const { metadata, versionColumn } = checks[0];
  const current = await readVersions(manager, metadata, versionColumn, checks).catch(() => undefined);
  let chosen = checks[0];
  let actual: unknown;
  let state: 'changed' | 'deleted' | 'unknown' = 'unknown';
  if (current) {
    const rowOf = (check: VersionCheck) => current.find((row) => idsEqual(metadata, row, check.identifier));
    const changed = checks.find((check) => {
      const row = rowOf(check);
      return row !== undefined && String(versionColumn.getEntityValue(row)) !== String(check.expected);
    });
    // rows this statement deleted itself are gone too: a missing row is only known to be someone
    // else's doing when more are missing than the statement removed
    const missing = checks.filter((check) => rowOf(check) === undefined);
    if (changed) {
      chosen = changed;
      state = 'changed';
      actual = versionColumn.getEntityValue(rowOf(changed)!);
    } else if (missing.length > affected) {
      chosen = missing[0];
      state = 'deleted';
    }
  }
  const id = metadata.getEntityIdMap(chosen.entity) ?? chosen.identifier;
  const what =
    state === 'changed'
      ? `the row is now at version ${String(actual)}`
      : state === 'deleted'
        ? 'the row no longer exists (deleted by someone else)'
        : 'the row was changed by a concurrent transaction';
  const rest = checks.length > 1 ? ` (one ${operation} statement covered ${checks.length} ${metadata.name} rows: let the transaction roll back)` : '';
  return staleWrite(metadata.name, id, chosen.expected, what, operation, rest, {
    entity: metadata.name,
    id,
    expectedVersion: chosen.expected,
    actualVersion: actual,
    deleted: state === 'deleted',
  });
}

async function readVersions(manager: EntityManager, metadata: EntityMetadata, vcol: ColumnMetadata, checks: VersionCheck[]): Promise<ObjectLiteral[]> {
  const alias = 'ormlock_current';
  return onPrimary(manager, (primary) =>
    primary
      .createQueryBuilder()
      .select([...metadata.primaryColumns, vcol].map((c) => `${alias}.${c.propertyPath}`))
      .from(metadata.target, alias)
      .whereInIds(checks.map((c) => c.identifier))
      .withDeleted()
      .setOption('create-pojo')
      .getMany(),
  );
}

/** The manager of the builder's own query runner (its transaction); the DataSource's otherwise. */
function managerOf(qb: object): EntityManager {
  const queryRunner: QueryRunner | undefined = (qb as { queryRunner?: QueryRunner }).queryRunner;
  return queryRunner?.manager ?? dataSourceOf(qb)!.manager;
}

function idsEqual(metadata: EntityMetadata, row: ObjectLiteral, identifier: ObjectLiteral): boolean {
  return metadata.primaryColumns.every((c) => String(c.getEntityValue(row)) === String(c.getEntityValue(identifier)));
}

function mergeValueMap(target: ObjectLiteral, source: ObjectLiteral): ObjectLiteral {
  for (const [key, value] of Object.entries(source)) {
    if (value !== null && typeof value === 'object' && !(value instanceof Date) && target[key] && typeof target[key] === 'object') {
      target[key] = mergeValueMap({ ...target[key] }, value);
    } else {
      target[key] = value;
    }
  }
  return target;
}
