import { AsyncLocalStorage } from 'node:async_hooks';
import { DeleteQueryBuilder, EntityManager, InsertQueryBuilder, RelationQueryBuilder, UpdateQueryBuilder, type EntityMetadata } from 'typeorm';
import { SoftDeleteQueryBuilder } from 'typeorm/query-builder/SoftDeleteQueryBuilder';
import { SubjectExecutor } from 'typeorm/persistence/SubjectExecutor';
import { staleCriteriaWrite, uncheckedVersionedWrite } from '../../../faults/versioned';
import { refusesUncheckedWrites } from '../../../locks/optimistic';
import { installationOf } from '../../../installations';
import { dataSourceOf } from '../compat';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';
import { primaryKeysOfWhere } from './update-rows';

/**
 * Writes of a `@Versioned` entity that check no version — `update()`, `updateAll()`, `delete()`,
 * `deleteAll()`, `upsert()`, `increment()/decrement()`, `softDelete()/restore()` (repository or
 * manager) and query-builder `update()/delete()/softDelete()/restore()/insert().orUpdate()` — all
 * end in one of four builders' `execute()`. On an installed DataSource they are refused there,
 * before the builder sends anything (LockConfigError, src/faults/versioned.ts), unless the entity
 * declares `uncheckedWrites: 'allow'`. So is `clear()` (a TRUNCATE the manager sends itself), and a
 * relation query builder's `add()`/`remove()` of a versioned entity's ManyToMany (junction rows
 * written without moving the owner's version, which a save() of the collection moves, checked).
 *
 * TypeORM's own persistence (save(), remove(), softRemove(), recover(), cascades, tree executors,
 * ormlock's ManyToMany version bump) uses the same builders: the statements it sends from
 * SubjectExecutor's operation methods run inside `persisting` (entered only when the flush holds a
 * subject of a versioned entity), and are left alone; their version checks are persistence.ts's.
 * The operation methods call no user code (listeners and subscribers run before and after them),
 * so a subscriber's own `manager.update()` is still refused.
 *
 * An update, delete, soft delete or restore whose WHERE names the row by its primary key AND its
 * version, each by `=` (`repository.update({ id, version: 3 }, { … })`), is checked instead: it runs
 * (moving the version, as TypeORM's builders do), and 0 affected rows is StaleEntityError.
 */

/** Set while SubjectExecutor's operations write (see the file comment). */
const persisting = new AsyncLocalStorage<true>();

const executor = SubjectExecutor.prototype as any;
const manager = EntityManager.prototype as any;
const relation = RelationQueryBuilder.prototype as any;
const EXECUTOR = 'SubjectExecutor.prototype';
const OPERATIONS = [
  'executeInsertOperations',
  'executeUpdateOperations',
  'executeRemoveOperations',
  'executeSoftRemoveOperations',
  'executeRecoverOperations',
] as const;
/**
 * The subjects each operation writes for (an operation with none writes nothing: no frame for it).
 * The insert step also bumps the version of a versioned owner whose ManyToMany lost junction rows
 * (persistence.ts), so removed subjects count for it too.
 */
const SUBJECTS_OF: Record<(typeof OPERATIONS)[number], readonly string[]> = {
  executeInsertOperations: ['insertSubjects', 'removeSubjects'],
  executeUpdateOperations: ['updateSubjects'],
  executeRemoveOperations: ['removeSubjects'],
  executeSoftRemoveOperations: ['softRemoveSubjects'],
  executeRecoverOperations: ['recoverSubjects'],
};

/** True when every list of `lists` on the executor is an empty array. */
function noSubjects(self: any, lists: readonly string[]): boolean {
  for (const list of lists) {
    const subjects = self[list];
    if (!Array.isArray(subjects) || subjects.length > 0) return false;
  }
  return true;
}

const BY_VERSION = 'a WHERE naming the primary key and the version (e.g. update({ id, version }, …): checked)';
const INSTEAD_UPDATE = `save() on the loaded entity (checked against the version it was loaded with), or ${BY_VERSION}`;
const INSTEAD_DELETE = `remove() on the loaded entity (checked against the version it was loaded with), or ${BY_VERSION}`;
const INSTEAD_SOFT =
  'softRemove()/recover() on the loaded entity (checked against the version it was loaded with), ' +
  'or softDelete()/restore() with a WHERE naming the primary key and the version (checked)';
const INSTEAD_COLLECTION = 'a save() of the loaded entity with the changed collection (it moves the version, checked)';
const INSTEAD_UPSERT = 'save() on the loaded entity (checked against the version it was loaded with), or insert() of a new row';

interface Builder {
  readonly proto: any;
  readonly label: string;
  readonly mentions: string[];
  /** The call as the refusal names it; undefined: this statement overwrites no row (a plain INSERT). */
  call(map: any): string | undefined;
  /** The call, short (the StaleEntityError of a write by primary key and version). */
  short(map: any): string;
  readonly instead: string;
  /** A WHERE by primary key and version makes it checked (it moves the version). */
  readonly byVersion: boolean;
}

/** The four builders: what each writes, and the name of the call in the refusal. */
const builders: Builder[] = [
  {
    proto: UpdateQueryBuilder.prototype,
    label: 'UpdateQueryBuilder.prototype',
    mentions: ['callListeners'],
    call: () => "update() (repository/manager update, updateAll, increment, decrement, or a query builder's update())",
    short: () => 'update()',
    instead: INSTEAD_UPDATE,
    byVersion: true,
  },
  {
    proto: DeleteQueryBuilder.prototype,
    label: 'DeleteQueryBuilder.prototype',
    mentions: ['callListeners'],
    call: () => "delete() (repository/manager delete, deleteAll, or a query builder's delete())",
    short: () => 'delete()',
    instead: INSTEAD_DELETE,
    byVersion: true,
  },
  {
    proto: SoftDeleteQueryBuilder.prototype,
    label: 'SoftDeleteQueryBuilder.prototype',
    mentions: ['queryType'],
    call: (map) =>
      map.queryType === 'restore'
        ? "restore() (repository/manager restore, or a query builder's restore())"
        : "softDelete() (repository/manager softDelete, or a query builder's softDelete())",
    short: (map) => (map.queryType === 'restore' ? 'restore()' : 'softDelete()'),
    instead: INSTEAD_SOFT,
    byVersion: true,
  },
  {
    proto: InsertQueryBuilder.prototype,
    label: 'InsertQueryBuilder.prototype',
    mentions: ['callListeners'],
    // only an upsert overwrites a row; a plain INSERT (or orIgnore) writes a new one
    call: (map) => (map.onUpdate ? "upsert() (repository/manager upsert, or a query builder's insert().orUpdate())" : undefined),
    short: () => 'upsert()',
    instead: INSTEAD_UPSERT,
    byVersion: false,
  },
];

/**
 * The row and version a write's WHERE names (the primary key and the version column, each by `=`),
 * or undefined. An UPDATE that sets the version itself is not checked this way (TypeORM moves the
 * version only when the SET leaves it out).
 */
function namedVersion(qb: any): { id: Record<string, unknown>; expected: unknown } | undefined {
  const map = qb.expressionMap;
  const metadata: EntityMetadata = map.mainAlias.metadata;
  const vcol = metadata.versionColumn;
  if (!vcol) return undefined;
  if (map.queryType === 'update' && map.valuesSet && typeof map.valuesSet === 'object' && vcol.getEntityValue(map.valuesSet) !== undefined) return undefined;
  const rows = primaryKeysOfWhere(metadata, map.mainAlias.name, map.wheres, map.parameters, [...metadata.primaryColumns, vcol]);
  if (!rows || rows.length !== 1) return undefined;
  const { [vcol.propertyPath]: expected, ...id } = rows[0];
  return expected === undefined || expected === null ? undefined : { id, expected };
}

/** A write by primary key and version: runs, and 0 affected rows (the row moved on) is StaleEntityError. */
async function checkedByVersion(qb: any, b: Builder, named: { id: Record<string, unknown>; expected: unknown }, run: () => Promise<any>): Promise<any> {
  const result = await run();
  if (typeof result?.affected === 'number' && result.affected < 1) {
    throw staleCriteriaWrite(qb.expressionMap.mainAlias.metadata.name, named.id, named.expected, b.short(qb.expressionMap));
  }
  return result;
}

/** The refusal of an unchecked write by a builder, or undefined when it may run. */
function refusalOf(qb: any, b: Builder): Error | undefined {
  const map = qb.expressionMap;
  const metadata: EntityMetadata | undefined = map.mainAlias?.hasMetadata ? map.mainAlias.metadata : undefined;
  if (!metadata || !refusesUncheckedWrites(metadata.target) || persisting.getStore()) return undefined;
  const name = b.call(map);
  if (name === undefined || !installationOf(dataSourceOf(qb))) return undefined;
  return uncheckedVersionedWrite(metadata.name, name, b.instead);
}

/** True when a subject of the flush is of a @Versioned entity (only then are its statements marked). */
function hasVersionedSubject(self: any): boolean {
  return (self.allSubjects as Array<{ metadata: EntityMetadata }>).some(
    (s) => s.metadata && typeof s.metadata.target === 'function' && refusesUncheckedWrites(s.metadata.target),
  );
}

/** The refusal of unchecked @Versioned writes (see the file comment), behind one probe. */
export const versionedWritesPatch: InternalPatch = {
  name:
    `${builders.map((b) => `${b.label}.execute`).join(' / ')}, ${EXECUTOR}.${OPERATIONS.join(' / ')}, EntityManager.prototype.clear, ` +
    'RelationQueryBuilder.prototype.add / remove (@Versioned unchecked writes)',
  probe: () => [
    ...builders.flatMap((b) => expectMethod(b.proto, b.label, 'execute', b.mentions)),
    ...expectMethod(InsertQueryBuilder.prototype, 'InsertQueryBuilder.prototype', 'orUpdate', ['onUpdate']),
    ...OPERATIONS.flatMap((op) => expectMethod(executor, EXECUTOR, op)),
    ...expectMethod(executor, EXECUTOR, 'execute', ['allSubjects', 'executeInsertOperations']),
    ...expectMethod(manager, 'EntityManager.prototype', 'clear', ['getMetadata', 'clearTable']),
    ...['add', 'remove'].flatMap((m) => expectMethod(relation, 'RelationQueryBuilder.prototype', m, ['relationMetadata'])),
  ],
  apply() {
    const undo = builders.map((b) =>
      replaceMethod(
        b.proto,
        'execute',
        (base) =>
          function (this: any, ...args: unknown[]) {
            const refusal = refusalOf(this, b);
            if (!refusal) return base.apply(this, args);
            const named = b.byVersion ? namedVersion(this) : undefined;
            return named ? checkedByVersion(this, b, named, () => base.apply(this, args)) : Promise.reject(refusal);
          },
      ),
    );
    for (const op of OPERATIONS) {
      const lists = SUBJECTS_OF[op];
      undo.push(
        replaceMethod(
          executor,
          op,
          (base) =>
            function (this: any, ...args: unknown[]) {
              if (noSubjects(this, lists)) return base.apply(this, args); // writes nothing
              if (persisting.getStore() || !installationOf(dataSourceOf(this.queryRunner)) || !hasVersionedSubject(this)) return base.apply(this, args);
              return persisting.run(true, () => base.apply(this, args));
            },
        ),
      );
    }
    undo.push(
      replaceMethod(
        manager,
        'clear',
        (base) =>
          function (this: any, target: unknown, ...rest: unknown[]) {
            const ds = dataSourceOf(this);
            const metadata: EntityMetadata | undefined = ds?.hasMetadata(target as never) ? ds.getMetadata(target as never) : undefined;
            if (metadata && refusesUncheckedWrites(metadata.target) && installationOf(ds)) {
              return Promise.reject(uncheckedVersionedWrite(metadata.name, 'clear() (a TRUNCATE of the whole table)', INSTEAD_DELETE));
            }
            return base.call(this, target, ...rest);
          },
      ),
    );
    for (const method of ['add', 'remove'] as const) {
      undo.push(
        replaceMethod(
          relation,
          method,
          (base) =>
            function (this: any, ...args: unknown[]) {
              const rel = this.expressionMap?.relationMetadata;
              const owner: EntityMetadata | undefined = rel?.isManyToMany ? rel.entityMetadata : undefined;
              if (owner && refusesUncheckedWrites(owner.target) && installationOf(dataSourceOf(this))) {
                return Promise.reject(
                  uncheckedVersionedWrite(
                    owner.name,
                    `qb.relation(…, '${rel.propertyPath}').${method}() (junction rows, the version unmoved)`,
                    INSTEAD_COLLECTION,
                  ),
                );
              }
              return base.apply(this, args);
            },
        ),
      );
    }
    return () => undo.reverse().forEach((u) => u());
  },
};
