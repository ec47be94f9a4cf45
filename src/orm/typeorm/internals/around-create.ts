import { InsertQueryBuilder, type DataSource, type EntityMetadata, type QueryRunner } from 'typeorm';
import { SubjectExecutor } from 'typeorm/persistence/SubjectExecutor';
import { runWithAmbientConnection } from '../../../context/transaction';
import type { AroundCreateRunContext } from '../../../locks/parent';
import { lockMetadataOf, type AroundCreateHook } from '../../../metadata/registry';
import { installationOf, type Installation } from '../../../installations';
import { dataSourceName, dataSourceOf, describeDataSource } from '../compat';
import { lockedTreeOf } from '../tree-lock';
import type { TypeOrmPort } from '../typeorm-port';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';
import { treeInsertBypassed } from '../../../faults/trees';
import { DROP_NO_TRANSACTION, writeOutsideTransaction, writtenWhereNotInstalled } from '../../../faults/writes';

/** The `@AroundCreate` hooks that apply to rows of `meta` (ancestors' first, then in declaration order). */
export function aroundCreateHooksOf(meta: EntityMetadata): AroundCreateHook[] {
  return typeof meta.target === 'function' ? (lockMetadataOf(meta.target)?.aroundCreate ?? []) : [];
}

/**
 * Two hooks into TypeORM's write path, both inert unless the DataSource is installed and the
 * inserted entity has `@AroundCreate` hooks:
 *
 * - `SubjectExecutor.execute` (save / cascades): runs the hooks of every entity about to be
 *   inserted, one after the other, AFTER `save()` has opened its transaction (or joined the
 *   ambient one) and BEFORE TypeORM broadcasts beforeInsert — which calls entity listeners
 *   (`@BeforeInsert`) first and all subscribers at once, concurrently, so no subscriber, not
 *   even the first one, could run before them — and before its own insert bookkeeping
 *   (value sets, nested-set/closure executors). The subjects are then recomputed, so what the
 *   hooks changed is inserted.
 * - `InsertQueryBuilder.execute` (repository.insert(), query-builder inserts that call
 *   listeners): the same before its broadcast; outside a transaction it opens one around the
 *   hooks and the INSERT, because a lock outside a transaction would end at once.
 *
 * While a hook runs, the INSERT's transaction is the ambient one, so `dataSource.manager`,
 * repositories and `lock()` inside a hook use the INSERT's connection.
 */
/**
 * A step that runs first in the SubjectExecutor hook (after the transaction is open, before any
 * hook or TypeORM computation), e.g. @LockedTree's tree lock. It may return a converter applied
 * to errors from the rest of the write.
 */
export type ExecuteStep = (executor: any, inst: Installation) => Promise<((error: unknown) => unknown) | void>;
const executeSteps = new Set<ExecuteStep>();

/** Adds a step (see ExecuteStep); returns the undo. */
export function addExecuteStep(step: ExecuteStep): () => void {
  executeSteps.add(step);
  return () => {
    executeSteps.delete(step);
  };
}

const executorProto = SubjectExecutor.prototype as any;
const insertProto = InsertQueryBuilder.prototype as any;

/** The write path's hooks: the guard against uninstalled DataSources and the @AroundCreate hooks. */
export const writePatches: readonly InternalPatch[] = [
  {
    name: 'SubjectExecutor.prototype.execute',
    probe: () => [
      ...expectMethod(executorProto, 'SubjectExecutor.prototype', 'execute', ['insertSubjects', 'broadcastBeforeEventsForAll']),
      ...expectMethod(executorProto, 'SubjectExecutor.prototype', 'recompute', ['insertSubjects']),
    ],
    apply() {
      return replaceMethod(executorProto, 'execute', executeWithHooks);
    },
  },
  {
    name: 'InsertQueryBuilder.prototype.execute',
    probe: () => [
      ...expectMethod(insertProto, 'InsertQueryBuilder.prototype', 'execute', ['callListeners']),
      ...expectMethod(insertProto, 'InsertQueryBuilder.prototype', 'getValueSets'),
      ...expectMethod(insertProto, 'InsertQueryBuilder.prototype', 'setQueryRunner'),
    ],
    apply() {
      return replaceMethod(insertProto, 'execute', insertWithHooks);
    },
  },
];

/** Names of the write-time declarations of an entity class (empty when it has none). */
function writeDeclarations(target: unknown): string[] {
  if (typeof target !== 'function') return [];
  const d = lockMetadataOf(target);
  if (!d) return [];
  return [
    d.versioned ? '@Versioned' : '',
    d.aroundCreate.length ? '@AroundCreate' : '',
    d.advisory.length ? '@AdvisoryLock' : '',
    d.lockedTree !== undefined ? '@LockedTree' : '',
  ].filter(Boolean);
}

/** A decorated entity written through a DataSource without an installation: its locks could not be taken. */
function refuseUninstalled(ds: DataSource | undefined, metas: EntityMetadata[]): void {
  for (const meta of metas) {
    const declared = writeDeclarations(meta.target);
    if (!declared.length) continue;
    const name = dataSourceName(ds);
    throw writtenWhereNotInstalled(meta.name, declared.join(', '), describeDataSource(ds), '`await installLocking(dataSource)` on it (after initialize())', {
      entity: meta.name,
      dataSource: name,
    });
  }
}

function executeWithHooks(baseExecute: (this: any) => Promise<void>) {
  return async function (this: any) {
    const queryRunner: QueryRunner = this.queryRunner;
    const ds = dataSourceOf(queryRunner);
    const inst = installationOf(ds);
    if (!inst) {
      const subjects = [
        ...this.insertSubjects,
        ...this.updateSubjects,
        ...this.removeSubjects,
        ...(this.softRemoveSubjects ?? []),
        ...(this.recoverSubjects ?? []),
      ];
      refuseUninstalled(
        ds,
        subjects.map((s: { metadata: EntityMetadata }) => s.metadata),
      );
      return baseExecute.call(this);
    }
    if (executeSteps.size === 0) return hooksThenExecute.call(this, inst, queryRunner, baseExecute);
    const onError: Array<(error: unknown) => unknown> = [];
    try {
      for (const step of [...executeSteps]) {
        const convert = await step(this, inst);
        if (convert) onError.push(convert);
      }
      return await hooksThenExecute.call(this, inst, queryRunner, baseExecute);
    } catch (error) {
      throw onError.reduce((e, convert) => convert(e), error);
    }
  };
}

/** The @AroundCreate hooks of the subjects about to be inserted, then TypeORM's execute. */
async function hooksThenExecute(this: any, inst: Installation, queryRunner: QueryRunner, baseExecute: (this: any) => Promise<void>): Promise<void> {
  const work = (this.insertSubjects as Array<{ metadata: EntityMetadata; entity?: object }>).filter(
    (s) => s.entity && aroundCreateHooksOf(s.metadata).length > 0,
  );
  if (work.length === 0) return baseExecute.call(this);
  if (!queryRunner.isTransactionActive) {
    const names = [...new Set(work.map((s) => s.metadata.name))].join(', ');
    throw writeOutsideTransaction(`@AroundCreate on ${names}`, 'save(…, { transaction: false })', 'what the hooks lock', DROP_NO_TRANSACTION, {
      entity: names,
    });
  }
  await runAroundCreateHooks(
    inst,
    queryRunner,
    work.map((s) => ({ metadata: s.metadata, entity: s.entity! })),
  );
  // what the hooks changed (a reloaded parent, computed columns) must reach the INSERT
  for (const list of ['insertSubjects', 'updateSubjects', 'removeSubjects', 'softRemoveSubjects', 'recoverSubjects']) {
    for (const subject of this[list] as Array<{ recompute(): void }>) subject.recompute();
  }
  this.recompute();
  return baseExecute.call(this);
}

function insertWithHooks(baseInsert: (this: any) => Promise<unknown>) {
  return async function (this: any) {
    const map = this.expressionMap;
    const ds = dataSourceOf(this);
    const inst = installationOf(ds);
    if (!inst && map.mainAlias?.hasMetadata && map.callListeners === true) refuseUninstalled(ds, [map.mainAlias.metadata]);
    // TypeORM's persistence inserts with callListeners(false): the SubjectExecutor hook covered those
    if (!inst || map.callListeners !== true || !map.mainAlias?.hasMetadata) return baseInsert.call(this);
    const metadata: EntityMetadata = map.mainAlias.metadata;
    if (lockedTreeOf(metadata)) throw treeInsertBypassed(metadata.name, map.onUpdate ? 'upsert()' : 'insert() / a query-builder insert');
    if (map.insertFromSelect) return baseInsert.call(this);
    if (aroundCreateHooksOf(metadata).length === 0) return baseInsert.call(this);
    const valueSets: object[] = this.getValueSets();
    if (valueSets.length === 0) return baseInsert.call(this);
    const rows = valueSets.map((entity) => ({ metadata, entity }));

    const given: QueryRunner | undefined = this.queryRunner;
    if (given?.isTransactionActive) {
      await runAroundCreateHooks(inst, given, rows);
      return baseInsert.call(this);
    }
    const queryRunner = given ?? ds!.createQueryRunner();
    try {
      await queryRunner.startTransaction();
    } catch (error) {
      if (!given) await queryRunner.release();
      throw error;
    }
    this.setQueryRunner(queryRunner);
    try {
      await runAroundCreateHooks(inst, queryRunner, rows);
      const result = await baseInsert.call(this);
      await queryRunner.commitTransaction();
      return result;
    } catch (error) {
      if (queryRunner.isTransactionActive) await queryRunner.rollbackTransaction().catch(() => undefined);
      throw error;
    } finally {
      if (!given) {
        this.queryRunner = undefined;
        await queryRunner.release();
      }
    }
  };
}

/**
 * Runs the hooks of each row in order (rows in insert order, each row's hooks in declaration
 * order), awaiting each, with the INSERT's transaction as the ambient one.
 */
export async function runAroundCreateHooks(
  inst: Installation,
  queryRunner: QueryRunner,
  rows: Array<{ metadata: EntityMetadata; entity: object }>,
): Promise<void> {
  const port = inst.port as TypeOrmPort;
  const run = async () => {
    for (const { metadata, entity } of rows) {
      const ctx: AroundCreateRunContext = { manager: queryRunner.manager, queryRunner, installation: inst, descriptor: port.descriptorOf(metadata) };
      for (const hook of aroundCreateHooksOf(metadata)) await hook(entity, ctx);
    }
  };
  // The INSERT may run on a connection that is not the ambient transaction's (save() outside
  // transaction(), or on a manager of the user's own): make it the ambient one for the hooks.
  return runWithAmbientConnection(inst, queryRunner, run);
}
