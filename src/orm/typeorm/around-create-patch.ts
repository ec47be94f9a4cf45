import { InsertQueryBuilder, type DataSource, type EntityMetadata, type QueryRunner } from 'typeorm';
import { SubjectExecutor } from 'typeorm/persistence/SubjectExecutor';
import { runWithAmbientRunner } from '../../context/transaction';
import { TransactionRequiredError } from '../../errors';
import { lockMetadataOf, type AroundCreateHook } from '../../metadata/registry';
import { installationOf, type Installation } from './installations';
import type { AroundCreateRunContext } from './parent-lock';

let patched = false;

/**
 * A step run first by the patched `SubjectExecutor.execute` (installed DataSources only), before
 * the `@AroundCreate` hooks and before TypeORM computes anything; it may return a converter
 * for errors the rest of `execute` throws. Added by other features (e.g. `@LockedTree`).
 */
export type ExecuteStep = (executor: any, inst: Installation) => Promise<((error: unknown) => unknown) | void>;
const executeSteps = new Set<ExecuteStep>();

/** Adds a step (see ExecuteStep) and applies the patch if needed; returns the undo. */
export function addExecuteStep(step: ExecuteStep): () => void {
  patchAroundCreate();
  executeSteps.add(step);
  return () => {
    executeSteps.delete(step);
  };
}

/** The `@AroundCreate` hooks that apply to rows of `meta` (ancestors' first, then in declaration order). */
export function aroundCreateHooksOf(meta: EntityMetadata): AroundCreateHook[] {
  return typeof meta.target === 'function' ? lockMetadataOf(meta.target)?.aroundCreate ?? [] : [];
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
export function patchAroundCreate(): void {
  if (patched) return;
  patched = true;

  const executorProto = SubjectExecutor.prototype as any;
  const baseExecute = executorProto.execute;
  executorProto.execute = async function (this: any) {
    const queryRunner: QueryRunner = this.queryRunner;
    const inst = installationOf(queryRunner.dataSource);
    if (!inst) return baseExecute.call(this);
    if (executeSteps.size === 0) return executeWithHooks.call(this, inst, queryRunner);
    const onError: Array<(error: unknown) => unknown> = [];
    try {
      for (const step of [...executeSteps]) {
        const convert = await step(this, inst);
        if (convert) onError.push(convert);
      }
      return await executeWithHooks.call(this, inst, queryRunner);
    } catch (error) {
      throw onError.reduce((e, convert) => convert(e), error);
    }
  };

  async function executeWithHooks(this: any, inst: Installation, queryRunner: QueryRunner) {
    const work = (this.insertSubjects as Array<{ metadata: EntityMetadata; entity?: object }>).filter(
      (s) => s.entity && aroundCreateHooksOf(s.metadata).length > 0,
    );
    if (work.length === 0) return baseExecute.call(this);
    if (!queryRunner.isTransactionActive) {
      const names = [...new Set(work.map((s) => s.metadata.name))].join(', ');
      throw new TransactionRequiredError(
        `@AroundCreate on ${names}: save(…, { transaction: false }) outside a transaction cannot hold what the hooks lock ` +
          `until the INSERT commits; drop { transaction: false } or wrap the work in transaction(…).`,
        { entity: names },
      );
    }
    await runAroundCreateHooks(inst, queryRunner, work.map((s) => ({ metadata: s.metadata, entity: s.entity! })));
    // what the hooks changed (a reloaded parent, computed columns) must reach the INSERT
    for (const list of ['insertSubjects', 'updateSubjects', 'removeSubjects', 'softRemoveSubjects', 'recoverSubjects']) {
      for (const subject of this[list] as Array<{ recompute(): void }>) subject.recompute();
    }
    this.recompute();
    return baseExecute.call(this);
  }

  const insertProto = InsertQueryBuilder.prototype as any;
  const baseInsert = insertProto.execute;
  insertProto.execute = async function (this: any) {
    const map = this.expressionMap;
    const ds: DataSource = this.dataSource;
    const inst = installationOf(ds);
    // TypeORM's persistence inserts with callListeners(false): the SubjectExecutor hook covered those
    if (!inst || map.callListeners !== true || map.insertFromSelect || !map.mainAlias?.hasMetadata) return baseInsert.call(this);
    const metadata: EntityMetadata = map.mainAlias.metadata;
    if (aroundCreateHooksOf(metadata).length === 0) return baseInsert.call(this);
    const valueSets: object[] = this.getValueSets();
    if (valueSets.length === 0) return baseInsert.call(this);
    const rows = valueSets.map((entity) => ({ metadata, entity }));

    const given: QueryRunner | undefined = this.queryRunner;
    if (given?.isTransactionActive) {
      await runAroundCreateHooks(inst, given, rows);
      return baseInsert.call(this);
    }
    const queryRunner = given ?? ds.createQueryRunner();
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
  const run = async () => {
    for (const { metadata, entity } of rows) {
      const ctx: AroundCreateRunContext = { manager: queryRunner.manager, queryRunner, metadata };
      for (const hook of aroundCreateHooksOf(metadata)) await hook(entity, ctx);
    }
  };
  // The INSERT may run on a connection that is not the ambient transaction's (save() outside
  // transaction(), or on a manager of the user's own): make it the ambient one for the hooks.
  return runWithAmbientRunner(inst.dataSource, queryRunner, run);
}
