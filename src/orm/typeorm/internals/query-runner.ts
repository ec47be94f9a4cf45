import { DataSource, type QueryRunner } from 'typeorm';
import {
  began,
  discarded,
  dueStandIns,
  finishTransaction,
  knownState,
  notPoolableReason,
  poolable,
  rolledBackTo,
  runEndHandlers,
  savepointOpened,
  savepointReleased,
} from '../../../context/connection-model';
import type { IsolationLevel } from '../../port';
import { installationOf } from '../../../installations';
import { driverConnectionClosed } from '../../lost-signal';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';

const LABEL = 'DataSource.prototype';
const ROUTED = Symbol('ormlock.routedQueryRunner');

/**
 * Every QueryRunner of an installed DataSource reports its transactions to the connection model:
 * `startTransaction` (a BEGIN, or a savepoint when one is open — TypeORM's nested transactions),
 * `commitTransaction` (COMMIT or RELEASE SAVEPOINT), `rollbackTransaction` (ROLLBACK or ROLLBACK TO
 * SAVEPOINT) — whoever calls them: ormlock, `manager.transaction`, `dataSource.transaction`, or user
 * code on a QueryRunner of its own. `release` gives the connection back to the pool only outside a
 * transaction and holding no lock ormlock took (the model knows it without a query); otherwise the
 * connection is destroyed and the event reported.
 */
export const queryRunnerModelPatch: InternalPatch = {
  name: `${LABEL}.createQueryRunner`,
  probe: () => expectMethod(DataSource.prototype, LABEL, 'createQueryRunner', ['createQueryRunner']),
  apply() {
    return replaceMethod(
      DataSource.prototype,
      'createQueryRunner',
      (base) =>
        function (this: DataSource, ...args: unknown[]) {
          const qr = base.apply(this, args) as QueryRunner;
          if (installationOf(this)) route(qr, this);
          return qr;
        },
    );
  },
};

type Routed = QueryRunner & { [ROUTED]?: true; transactionDepth?: number };

function route(qr: Routed, ds: DataSource): void {
  if (qr[ROUTED]) return;
  qr[ROUTED] = true;
  /* eslint-disable @typescript-eslint/unbound-method -- the originals are called with .call(qr, …) */
  const start = qr.startTransaction;
  const commit = qr.commitTransaction;
  const rollback = qr.rollbackTransaction;
  const release = qr.release;
  /* eslint-enable @typescript-eslint/unbound-method */
  qr.startTransaction = async function (isolation?: IsolationLevel) {
    const opened = !qr.isTransactionActive;
    await start.call(this, isolation);
    if (opened) began(qr, isolation ?? (ds.options as { isolationLevel?: IsolationLevel }).isolationLevel);
    else savepointOpened(qr, depthName(qr));
  };
  const ending = (how: 'commit' | 'rollback', base: () => Promise<void>) =>
    async function (this: QueryRunner) {
      const depth = qr.transactionDepth;
      try {
        await base.call(this);
      } finally {
        const settled = settle(qr, how, depth);
        if (settled) await settled; // only when end handlers run (no promise otherwise)
      }
    };
  qr.commitTransaction = ending('commit', commit);
  qr.rollbackTransaction = ending('rollback', rollback);
  qr.release = function () {
    // nothing the model holds against pooling it (the common case): TypeORM's release as is
    if (!plainRelease(qr)) return releaseAfterModel(qr, ds, release, this);
    try {
      return release.call(this);
    } catch (error) {
      return Promise.reject(error);
    }
  };
}

/** True when the model has nothing on `qr` (no transaction, no lock, not dead): its release needs no more than TypeORM's. */
function plainRelease(qr: QueryRunner): boolean {
  const s = knownState(qr);
  return !s || (!s.inTransaction && s.locks.length === 0 && !s.dead);
}

/** `release` when the model has something on `qr`: stand-ins released first, a connection not poolable destroyed. */
async function releaseAfterModel(qr: Routed, ds: DataSource, release: () => Promise<void>, self: QueryRunner): Promise<void> {
  // the driver gave a dead connection up already (node-postgres' error handler): the model forgets it
  if (qr.isReleased && !poolable(qr)) discarded(qr, 'the connection died');
  if (!qr.isReleased) {
    const due = dueStandIns(qr);
    if (due.length) await runEndHandlers(qr, due).catch(() => undefined);
    const reason = notPoolableReason(qr);
    if (reason) return discard(qr, ds, reason);
  }
  return release.call(self);
}

/** TypeORM's name of its innermost savepoint (`typeorm_<depth - 1>`), or of `depth`'s. */
function depthName(qr: Routed, depth = qr.transactionDepth): string | undefined {
  return typeof depth === 'number' ? `typeorm_${depth - 1}` : undefined;
}

/** After COMMIT/ROLLBACK (or RELEASE / ROLLBACK TO SAVEPOINT): what the model must follow; a promise only while end handlers run. */
function settle(qr: Routed, how: 'commit' | 'rollback', before: number | undefined): Promise<void> | undefined {
  const state = knownState(qr);
  if (!state?.inTransaction) return;
  if (!qr.isTransactionActive) return finishTransaction(qr, how);
  if (before === undefined || qr.transactionDepth === before || before < 2) return; // the statement failed: nothing changed
  const savepoint = depthName(qr, before);
  if (how === 'commit') savepointReleased(qr, state.savepoints.includes(savepoint) ? savepoint : undefined);
  else rolledBackTo(qr, state.savepoints.includes(savepoint) ? savepoint : undefined);
}

/** Destroys the connection instead of pooling it, and reports why. */
async function discard(qr: Routed, ds: DataSource, reason: string): Promise<void> {
  // a connection the server closed (killed, reset) is destroyed as a matter of course: its locks
  // were reported lost already, so no warning; one still open is news (a lock or transaction left)
  const dead = driverConnectionClosed((qr as unknown as { databaseConnection?: unknown }).databaseConnection);
  discarded(qr, dead ? 'the connection died' : reason);
  const inst = installationOf(ds);
  if (!dead)
    process.emitWarning(`ormlock: a connection of ${inst?.label ?? 'a DataSource'} was destroyed instead of going back to the pool: ${reason}`, {
      code: 'ORMLOCK_CONNECTION_DISCARDED',
    });
  const runner = qr as unknown as {
    releasePostgresConnection?: (err?: Error) => Promise<void>;
    databaseConnection?: { destroy?: () => void };
    isReleased: boolean;
    driver?: { connectedQueryRunners?: unknown[] };
  };
  if (typeof runner.releasePostgresConnection === 'function') return runner.releasePostgresConnection(new Error(`ormlock: ${reason}`));
  runner.isReleased = true;
  runner.databaseConnection?.destroy?.();
  const list = runner.driver?.connectedQueryRunners;
  const i = list ? list.indexOf(qr) : -1;
  if (i >= 0) list!.splice(i, 1);
}
