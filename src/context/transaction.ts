import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import type { IsolationLevel } from '../isolation-level';
import { LockConfigError } from '../errors';
import { requireInstallation } from '../orm/typeorm/installations';
import { ambientTx, childFrame, currentFrame, pinnedRunner, runInFrame, type TxState } from './store';

export type Propagation = 'required' | 'requires_new';

export interface TransactionOptions {
  /** `READ COMMITTED`, `REPEATABLE READ`, `SERIALIZABLE`, … (only when a transaction is opened). */
  isolation?: IsolationLevel;
  /**
   * `required` (default): join the ambient transaction or open one.
   * `requires_new`: always open a new one on a second connection (it commits on its own).
   */
  propagation?: Propagation;
  /** Which installed DataSource; defaults to the first one given to installLocking. */
  dataSource?: DataSource;
}

const PROPAGATIONS: readonly Propagation[] = ['required', 'requires_new'];
const ISOLATIONS: readonly string[] = ['READ UNCOMMITTED', 'READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE'];
let nextTxId = 1;

/**
 * Runs `fn` in a transaction: joins the ambient one or opens one. Everything TypeORM does
 * inside — `dataSource.manager`, repositories (also ones obtained earlier), query builders —
 * runs on that transaction's connection. A throw rolls back; lock-related driver errors
 * come out as ormlock errors (DeadlockError, SerializationError, …).
 */
export async function transaction<T>(fn: () => Promise<T> | T, options: TransactionOptions = {}): Promise<T> {
  const propagation = options.propagation ?? 'required';
  if (!PROPAGATIONS.includes(propagation)) {
    throw new LockConfigError(`transaction(): propagation '${String(propagation)}' is not one of ${PROPAGATIONS.join(', ')}`);
  }
  if (options.isolation !== undefined && !ISOLATIONS.includes(options.isolation)) {
    throw new LockConfigError(`transaction(): isolation '${String(options.isolation)}' is not one of ${ISOLATIONS.join(', ')}`);
  }
  const inst = requireInstallation(options.dataSource);
  const ds = inst.dataSource;
  const joined = ambientTx(ds);
  if (joined && propagation === 'required') {
    if (options.isolation && options.isolation !== (joined.isolation ?? options.isolation)) {
      throw new LockConfigError(
        `transaction(): asked for isolation ${options.isolation} inside a ${joined.isolation} transaction; ` +
          `use propagation 'requires_new' or set the isolation on the outer transaction.`,
      );
    }
    return fn();
  }

  // Inside a session-scoped lock, the transaction opens on the connection that lock pinned:
  // no second pool connection, and the lock's connection sees the transaction's writes.
  const pinned = propagation === 'required' ? pinnedRunner(ds) : undefined;
  const queryRunner = pinned ?? ds.createQueryRunner();
  const release = () => (pinned ? Promise.resolve() : queryRunner.release());
  try {
    if (!pinned) await queryRunner.connect();
    await queryRunner.startTransaction(options.isolation);
  } catch (error) {
    await release();
    throw inst.dialect.convertError(error) ?? error;
  }
  const tx: TxState = {
    id: nextTxId++,
    dataSource: ds,
    queryRunner,
    manager: queryRunner.manager,
    dialect: inst.dialect,
    isolation: options.isolation,
    heldKeys: new Set(),
    memo: new Map(),
  };
  const txs = new Map(currentFrame()?.txs ?? []);
  txs.set(ds, tx);
  try {
    const result = await runInFrame(childFrame({ txs }), fn);
    await queryRunner.commitTransaction();
    return result;
  } catch (error) {
    if (queryRunner.isTransactionActive) await queryRunner.rollbackTransaction().catch(() => undefined);
    throw inst.dialect.convertError(error) ?? error;
  } finally {
    await release();
  }
}

/**
 * Runs `fn` with a transaction that TypeORM (not ormlock) opened on `queryRunner` — e.g. the one
 * `save()` opens outside `transaction()` — registered as the ambient transaction of `dataSource`,
 * so that locks and repositories used inside take that connection. Does not commit or release.
 */
export function runWithAmbientRunner<T>(dataSource: DataSource, queryRunner: QueryRunner, fn: () => Promise<T>): Promise<T> {
  if (ambientTx(dataSource)?.queryRunner === queryRunner) return fn();
  const inst = requireInstallation(dataSource);
  const tx: TxState = {
    id: nextTxId++,
    dataSource,
    queryRunner,
    manager: queryRunner.manager,
    dialect: inst.dialect,
    heldKeys: new Set(),
    memo: new Map(),
  };
  const txs = new Map(currentFrame()?.txs ?? []);
  txs.set(dataSource, tx);
  return runInFrame(childFrame({ txs }), fn);
}

/** The ambient transaction's EntityManager, or the DataSource's default manager outside one. */
export function currentManager(dataSource?: DataSource): EntityManager {
  const ds = requireInstallation(dataSource).dataSource;
  return ambientTx(ds)?.manager ?? ds.manager;
}

/** True when a transaction is open on the DataSource in this async context. */
export function inTransaction(dataSource?: DataSource): boolean {
  return ambientTx(requireInstallation(dataSource).dataSource) !== undefined;
}
