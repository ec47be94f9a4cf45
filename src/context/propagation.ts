import { inSavepoint } from '../locks/savepoint';
import type { Installation } from '../installations';
import type { IsolationLevel } from '../orm/port';
import { savepointEnded, savepointStarted } from './commit-hooks';
import { ambientTx, childFrame, currentFrame, runInFrame, type TxState } from './store';
import { isolationInside, mandatoryWithoutTransaction, neverInsideTransaction } from '../faults/context';

/**
 * Propagation modes of `transaction()` and `@Transactional`, named as Spring and the Node peers
 * name them:
 * - `required` (default): join the ambient transaction, or open one;
 * - `requires_new`: always open a new one on a connection of its own (it commits on its own);
 * - `nested`: inside a transaction, a savepoint on its connection (a throw rolls back to it, and
 *   the locks and commit hooks taken inside go with it); outside, as `required`;
 * - `mandatory`: join the ambient transaction; outside one, TransactionRequiredError;
 * - `never`: run without a transaction; inside one, TransactionNotAllowedError;
 * - `supports`: join the ambient transaction if there is one, else run without;
 * - `not_supported`: run outside the ambient transaction (it is suspended, not ended: the locks
 *   it holds stay held until it ends).
 */
export type Propagation = 'required' | 'requires_new' | 'nested' | 'mandatory' | 'never' | 'supports' | 'not_supported';

export const PROPAGATIONS: readonly Propagation[] = ['required', 'requires_new', 'nested', 'mandatory', 'never', 'supports', 'not_supported'];

/**
 * Runs `fn` under one of the modes that `transaction()` does not handle itself (all but `required`
 * and `requires_new`). `required` is `transaction()` joining or opening as it does by default.
 */
export async function propagate<T>(
  inst: Installation,
  propagation: Propagation,
  isolation: IsolationLevel | undefined,
  fn: () => Promise<T> | T,
  required: () => Promise<T>,
): Promise<T> {
  const joined = ambientTx(inst);
  switch (propagation) {
    case 'mandatory':
      if (!joined) {
        throw mandatoryWithoutTransaction(inst.label);
      }
      return required();
    case 'never':
      if (joined) {
        throw neverInsideTransaction(inst.label);
      }
      return fn();
    case 'supports':
      return joined ? required() : fn();
    case 'not_supported':
      return joined ? suspended(inst, joined, fn) : fn();
    case 'nested':
      if (!joined) return required();
      if (isolation && isolation !== (joined.isolation ?? isolation)) {
        throw isolationInside("transaction({ propagation: 'nested' })", isolation, String(joined.isolation), inst.label, true);
      }
      return nested(inst, joined, fn);
    default:
      return required();
  }
}

/**
 * `nested` inside a transaction: a savepoint on its connection. The body sees a transaction state
 * of its own (dialect settings) that joins the outer one when the savepoint
 * is released, and is dropped with it when the savepoint is rolled back to.
 */
async function nested<T>(inst: Installation, outer: TxState, fn: () => Promise<T> | T): Promise<T> {
  const connection = outer.connection;
  const inner: TxState = { ...outer, memo: new Map(outer.memo), scope: { live: true } };
  return inSavepoint(inst, connection, 'ormlock_nested', async () => {
    savepointStarted(connection);
    let result: T;
    try {
      result = await runInFrame(frameWithTx(inner), fn);
    } catch (error) {
      // what the savepoint's rollback drops (locks, by the dialect's flags) the connection model drops
      savepointEnded(connection, 'rollback');
      throw error;
    } finally {
      inner.scope.live = false;
    }
    savepointEnded(connection, 'commit');
    for (const [key, value] of inner.memo) outer.memo.set(key, value);
    return result;
  });
}

/**
 * `not_supported` inside a transaction: `fn` runs as outside it — the ORM's calls go to the pool
 * (MikroORM's global `em` too), ormlock calls open their own transactions. The suspended
 * transaction stays open on its connection, with every lock it holds, until its own scope ends.
 */
function suspended<T>(inst: Installation, tx: TxState, fn: () => Promise<T> | T): Promise<T> {
  const frame = currentFrame();
  const txs = new Map(frame?.txs ?? []);
  txs.delete(inst);
  let pinned = frame?.pinned;
  if (pinned?.get(inst)?.connection === tx.connection) {
    const rest = new Map(pinned);
    rest.delete(inst);
    pinned = rest;
  }
  const readLock = frame?.readLock?.inst === inst ? undefined : frame?.readLock;
  const body = inst.port.leave ? () => inst.port.leave!(fn) : fn;
  return Promise.resolve(runInFrame(childFrame({ txs, pinned, readLock }), body));
}

/** The current frame with `tx` as the innermost transaction of its installation. */
function frameWithTx(tx: TxState) {
  const txs = new Map(currentFrame()?.txs ?? []);
  txs.delete(tx.inst);
  txs.set(tx.inst, tx);
  return childFrame({ txs });
}
