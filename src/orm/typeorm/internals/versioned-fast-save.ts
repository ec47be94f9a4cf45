import type { DataSource, EntityMetadata, EntitySubscriberInterface, ObjectLiteral, QueryRunner, SaveOptions, UpdateEvent } from 'typeorm';
import { EntityPersistExecutor } from 'typeorm/persistence/EntityPersistExecutor';
import { SubjectChangedColumnsComputer } from 'typeorm/persistence/SubjectChangedColumnsComputer';
import { installationOf } from '../../../installations';
import { dataSourceOf } from '../compat';
import { nextVersion } from '../../../locks/optimistic';
import { lockMetadataOf } from '../../../metadata/registry';
import { AdvisoryEntitySubscriber } from '../advisory-subscriber';
import { CoreSubscriber } from '../core-subscriber';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';
import { readBackGenerated, requireAffected, staleSave } from './persistence';
import { forgetLoaded, loadedState, rememberLoaded } from './versioned-snapshots';

type ColumnMetadata = EntityMetadata['columns'][number];

/**
 * `save()` of ONE loaded `@Versioned` object as one prepared statement: TypeORM's persistence
 * (subjects, cascades, its executor, the UPDATE builder, the broadcasts) is skipped where it would
 * do nothing but that statement. The changed columns are TypeORM's own diff against the values the
 * object was loaded with (versioned-snapshots.ts); the UPDATE — `SET <changed>, version = version
 * + 1[, <update date> = CURRENT_TIMESTAMP] WHERE <primary key> AND version = <the object's>` — is
 * built once per entity and changed-column set; 0 affected rows is the StaleEntityError of
 * TypeORM's path (persistence.ts), nothing written. The object then gets what TypeORM's save()
 * gives it (the new version, the update date when reloaded, null for unloaded nullable columns).
 *
 * Only when the outcome is TypeORM's: the entity has plain columns (transformers and embedded
 * columns are fine; no relations, embedded arrays, generated or spatial columns, inheritance,
 * tree, `@AdvisoryLock`), no
 * update listeners, and no subscriber that listens to its update events except ormlock's own
 * (whose afterUpdate is called with TypeORM's event); the options are among `reload`,
 * `listeners`, `transaction`, `data`, `chunk`; the object holds a usable snapshot and a change.
 * Everything else — nothing changed included — goes TypeORM's way, checked by persistence.ts.
 * (The SubjectExecutor.execute steps of around-create.ts act on inserts and @LockedTree
 * entities only, which this path never writes.)
 */

interface Statement {
  readonly sql: string;
  /** The update date is returned by the UPDATE (RETURNING). */
  readonly returning: boolean;
  /** Read back after it (drivers without RETURNING). */
  readonly readBack: ColumnMetadata[];
}

interface Plan {
  readonly vcol: ColumnMetadata;
  readonly updateDate: ColumnMetadata | undefined;
  readonly index: Map<ColumnMetadata, number>;
  readonly statements: Map<string, Statement>;
}

/** Per entity: its plan, or null when its saves go TypeORM's way. */
const plans = new WeakMap<EntityMetadata, Plan | null>();
const OPTIONS = new Set(['reload', 'listeners', 'transaction', 'data', 'chunk']);
const DRIVERS = new Set(['postgres', 'mysql', 'mariadb']);

let enabled = true;

/** Turns the fast path off (true) or on again: TypeORM's own path for every save, for tests comparing both. */
export function forceTypeormSave(force: boolean): void {
  enabled = !force;
}

const persist = EntityPersistExecutor.prototype as any;
const computer = new SubjectChangedColumnsComputer() as any;

export const versionedFastSavePatch: InternalPatch = {
  name: 'EntityPersistExecutor.prototype.execute (@Versioned save() of one loaded object as one checked UPDATE)',
  probe: () => [
    ...expectMethod(persist, 'EntityPersistExecutor.prototype', 'execute', [
      'mode',
      'queryRunner',
      'isTransactionActive',
      'startTransaction',
      'transactionSupport',
      'release',
      'data',
    ]),
    ...expectMethod(computer, 'SubjectChangedColumnsComputer.prototype', 'computeDiffColumns', ['changeMaps', 'diffColumns', 'databaseEntity']),
  ],
  apply() {
    return replaceMethod(
      persist,
      'execute',
      (base) =>
        function (this: any) {
          let fast: (() => Promise<void>) | undefined;
          try {
            fast = enabled && this.mode === 'save' ? fastSaveOf(this) : undefined;
          } catch (error) {
            return Promise.reject(error); // save() rejects, as TypeORM's async execute does
          }
          return fast ? fast() : base.call(this);
        },
    );
  },
};

/** The fast save of the executor's work, or undefined when it is TypeORM's (see the file comment). */
function fastSaveOf(executor: any): (() => Promise<void>) | undefined {
  const entity = executor.entity;
  if (entity === null || typeof entity !== 'object' || Array.isArray(entity)) return undefined;
  const options: SaveOptions | undefined = executor.options;
  if (options) for (const key in options) if (!OPTIONS.has(key)) return undefined;
  const ds = dataSourceOf(executor); // TypeORM 0.3 names it `connection`, 1.x `dataSource`
  if (!ds) return undefined;
  const target = executor.target ?? entity.constructor;
  if (typeof target !== 'function' || target === Object || !installationOf(ds) || !ds.hasMetadata(target)) return undefined;
  const meta = ds.getMetadata(target);
  // declarations can be made after installLocking (versioned(X), advisoryLock(X, …)): read each time
  const declared = lockMetadataOf(target);
  if (!declared?.versioned || declared.advisory.length > 0 || declared.lockedTree !== undefined) return undefined;
  const plan = planOf(meta, ds);
  if (!plan) return undefined;
  const hooks = updateHooks(ds, meta.target as Function);
  if (!hooks) return undefined;
  const state = loadedState(entity, meta);
  if (!state) return undefined;
  // TypeORM's own diff, against the values the object was loaded with
  const subject = { entity, metadata: meta, databaseEntity: state.row, changeMaps: [], diffColumns: [] as ColumnMetadata[] };
  computer.computeDiffColumns(subject);
  const changed = subject.diffColumns;
  if (changed.length === 0 || changed.some((c) => !c.isUpdate || c === plan.vcol)) return undefined;
  return () => run(executor, ds, meta, plan, entity, state, changed, options?.listeners === false ? [] : hooks);
}

function planOf(meta: EntityMetadata, ds: DataSource): Plan | null {
  let plan = plans.get(meta);
  if (plan === undefined) {
    plan = eligible(meta, ds)
      ? { vcol: meta.versionColumn!, updateDate: meta.updateDateColumn, index: new Map(meta.columns.map((c, i) => [c, i])), statements: new Map() }
      : null;
    plans.set(meta, plan);
  }
  return plan;
}

function eligible(meta: EntityMetadata, ds: DataSource): boolean {
  if (!DRIVERS.has(ds.driver.options.type)) return false;
  const spatial: readonly unknown[] = ds.driver.spatialTypes ?? [];
  return (
    meta.versionColumn !== undefined &&
    meta.primaryColumns.length > 0 &&
    meta.tableType === 'regular' &&
    !meta.inheritancePattern &&
    !meta.treeType &&
    meta.childEntityMetadatas.length === 0 &&
    meta.relations.length === 0 &&
    meta.relationIds.length === 0 &&
    meta.allEmbeddeds.every((e) => !e.isArray) &&
    meta.beforeUpdateListeners.length === 0 &&
    meta.afterUpdateListeners.length === 0 &&
    meta.columns.every(
      (c) =>
        !c.relationMetadata &&
        // embedded columns are set and read through their paths, as TypeORM does; not the key or the version
        !(c.embeddedMetadata && (c.isPrimary || c.isVersion)) &&
        c.asExpression === undefined &&
        (!c.isGenerated || c.isPrimary) &&
        !spatial.includes(c.type),
    )
  );
}

/**
 * The subscribers TypeORM would call with the update's events: ormlock's core subscriber (its
 * afterUpdate), or undefined when another one listens (TypeORM's way). ormlock's advisory
 * subscriber acts only for `@AdvisoryLock` entities, which take TypeORM's way.
 */
function updateHooks(ds: DataSource, target: Function): EntitySubscriberInterface[] | undefined {
  let hooks: EntitySubscriberInterface[] | undefined;
  for (const s of ds.subscribers) {
    if (!s.beforeUpdate && !s.afterUpdate) continue;
    const listens = s.listenTo?.();
    if (listens && listens !== Object && listens !== target && !Object.prototype.isPrototypeOf.call(listens, target)) continue;
    if (s instanceof AdvisoryEntitySubscriber) continue;
    if (s instanceof CoreSubscriber && !(s as EntitySubscriberInterface).beforeUpdate) {
      (hooks ??= []).push(s);
      continue;
    }
    return undefined;
  }
  return hooks ?? [];
}

/** The save, in save()'s transaction handling: joins the open one, else opens its own (unless `transaction: false`). */
async function run(
  executor: any,
  ds: DataSource,
  meta: EntityMetadata,
  plan: Plan,
  entity: ObjectLiteral,
  state: { row: object; complete: boolean },
  changed: ColumnMetadata[],
  hooks: EntitySubscriberInterface[],
): Promise<void> {
  const options: SaveOptions | undefined = executor.options;
  const queryRunner: QueryRunner = executor.queryRunner ?? ds.createQueryRunner();
  const oldData = queryRunner.data;
  if (options?.data) queryRunner.data = options.data;
  try {
    let ours = false;
    try {
      if (!queryRunner.isTransactionActive && ds.driver.transactionSupport !== 'none' && options?.transaction !== false) {
        ours = true;
        await queryRunner.startTransaction();
      }
      await write(queryRunner, ds, meta, plan, entity, state, changed, hooks, options?.reload !== false);
      if (ours) await queryRunner.commitTransaction();
    } catch (error) {
      if (ours) await queryRunner.rollbackTransaction().catch(() => undefined);
      throw error;
    }
  } finally {
    queryRunner.data = oldData;
    if (!executor.queryRunner) await queryRunner.release();
  }
}

async function write(
  queryRunner: QueryRunner,
  ds: DataSource,
  meta: EntityMetadata,
  plan: Plan,
  entity: ObjectLiteral,
  state: { row: object; complete: boolean },
  changed: ColumnMetadata[],
  hooks: EntitySubscriberInterface[],
  reload: boolean,
): Promise<void> {
  const driver = ds.driver;
  const { vcol } = plan;
  const expected = vcol.getEntityValue(entity);
  const statement = statementOf(plan, meta, ds, changed, reload);
  const parameters: unknown[] = [];
  for (const c of changed) parameters.push(driver.preparePersistentValue(c.getEntityValue(entity), c));
  for (const c of meta.primaryColumns) parameters.push(c.getEntityValue(entity));
  parameters.push(driver.preparePersistentValue(expected, vcol));

  forgetLoaded(entity); // written (or found stale): its loaded values are no longer the row's
  const result = await queryRunner.query(statement.sql, parameters, true);
  requireAffected(result, meta);
  const identifier = () => meta.getEntityIdMap(entity)!;
  if (result.affected < 1) throw await staleSave(queryRunner.manager, { metadata: meta, versionColumn: vcol, expected, entity, identifier: identifier() });

  // what TypeORM's executor merges into the object: the generated values, hydrated
  const generated: ObjectLiteral = {};
  if (statement.returning && Array.isArray(result.records) && result.records[0]) {
    Object.assign(generated, driver.createGeneratedMap(meta, result.records[0]) ?? {});
  }
  if (statement.readBack.length) {
    const reloaded = await readBackGenerated(queryRunner.manager, meta, identifier(), statement.readBack);
    if (reloaded) Object.assign(generated, reloaded);
  }
  vcol.setEntityValue(generated, nextVersion(expected));
  for (const column of meta.columns) {
    if (column.isVirtual || column.isDeleteDate) continue;
    // nullable columns the object does not hold become null, as after TypeORM's save()
    if (column.isNullable && column.getEntityValue(entity) === undefined) column.setEntityValue(entity, null);
  }
  for (const column of meta.columns) {
    const value = column.getEntityValue(generated);
    if (value !== undefined && value !== null) column.setEntityValue(entity, driver.prepareHydratedValue(value, column));
  }
  // the object is the row now (the update date too, unless not reloaded): its next save needs no re-read
  if (state.complete && (reload || !plan.updateDate)) rememberLoaded(entity, meta);

  if (hooks.length) {
    const event: UpdateEvent<any> = {
      dataSource: ds,
      connection: ds,
      queryRunner,
      manager: queryRunner.manager,
      entity,
      metadata: meta,
      databaseEntity: state.row,
      updatedColumns: changed,
      updatedRelations: [],
    } as UpdateEvent<any>;
    const pending: Promise<unknown>[] = [];
    for (const hook of hooks) {
      const done = hook.afterUpdate?.(event);
      if (done instanceof Promise) pending.push(done);
    }
    if (pending.length) await Promise.all(pending);
  }
}

/** The UPDATE of `changed` (built once per entity, changed-column set and reload). */
function statementOf(plan: Plan, meta: EntityMetadata, ds: DataSource, changed: ColumnMetadata[], reload: boolean): Statement {
  let key = reload ? 'r' : 'n';
  for (const c of changed) key += ',' + plan.index.get(c);
  let statement = plan.statements.get(key);
  if (!statement) {
    statement = buildStatement(plan, meta, ds, changed, reload);
    plan.statements.set(key, statement);
  }
  return statement;
}

function buildStatement(plan: Plan, meta: EntityMetadata, ds: DataSource, changed: ColumnMetadata[], reload: boolean): Statement {
  const driver = ds.driver as any;
  const escape = (name: string): string => driver.escape(name);
  const table = meta.tablePath
    .split('.')
    .map((part) => (part === '' ? part : escape(part)))
    .join('.');
  let index = 0;
  const param = (): string => driver.createParameter(`p${index}`, index++);
  const { vcol, updateDate } = plan;
  const sets = changed.map((c) => `${escape(c.databaseName)} = ${param()}`);
  sets.push(`${escape(vcol.databaseName)} = ${escape(vcol.databaseName)} + 1`);
  if (updateDate && !changed.includes(updateDate)) sets.push(`${escape(updateDate.databaseName)} = CURRENT_TIMESTAMP`);
  const where = [...meta.primaryColumns, vcol].map((c) => `${escape(c.databaseName)} = ${param()}`).join(' AND ');
  const reloaded = reload && updateDate ? [updateDate] : [];
  const returning = reloaded.length > 0 && ds.driver.isReturningSqlSupported('update');
  const sql =
    `UPDATE ${table} SET ${sets.join(', ')} WHERE ${where}` + (returning ? ` RETURNING ${reloaded.map((c) => escape(c.databaseName)).join(', ')}` : '');
  return { sql, returning, readBack: returning ? [] : reloaded };
}
