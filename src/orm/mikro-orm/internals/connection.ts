import type { EntityManager } from '@mikro-orm/core';
import { dropHooks, transactionCompleted, type CompletionOutcome } from '../../../context/commit-hooks';
import { began, finishTransaction, rolledBackTo, savepointOpened, savepointReleased } from '../../../context/connection-model';
import { throwIfLockLost } from '../../../context/store';
import { runWithAmbientConnection } from '../../../context/transaction';
import { connectionFor, knownConnection, newRootState, registerTransaction, rootStateOf, type RootState } from '../connection';
import type { IsolationLevel } from '../../port';
import { installationFor } from '../registry';
import { lostInOwnScope, ownScopeBody } from '../../own-scope-lost';
import { giveBack, knexDisposalProblems } from './give-back';
import { expectMethod, ownerOf, replaceMethod, type MikroPatch } from './patch';

/** Options key of `connection.begin()`: the driver connection to run the transaction on (ormlock's own begin). */
export const PINNED_RAW = Symbol('ormlock.pinnedRaw');
/** Options key: ormlock acquired PINNED_RAW and gives it back after the transaction. */
export const OWNS_RAW = Symbol('ormlock.ownsRaw');

/**
 * Transactions of an installed MikroORM (`AbstractSqlConnection.prototype.begin / commit / rollback`):
 * a root transaction runs on a driver connection acquired for it (knex's `transaction(…, { connection })`),
 * so that after COMMIT/ROLLBACK ormlock can end what the transaction held on that same connection —
 * observers hear `released`, MySQL/MariaDB release the session locks standing in for
 * transaction-scoped advisory locks — before the connection goes back to the pool. Savepoints
 * (nested transactions) belong to their root. Inert for MikroORM instances without an installation.
 */
export function connectionPatches(connection: object): MikroPatch[] {
  const owner = ownerOf(connection, 'begin');
  const label = 'AbstractSqlConnection.prototype';
  return [
    {
      name: `${label}.begin / commit / rollback`,
      probe: () => [
        ...expectMethod(owner, label, 'begin', ['getKnex', 'transaction', 'ctx']),
        ...expectMethod(owner, label, 'commit', ['commit']),
        ...expectMethod(owner, label, 'rollback', ['rollback']),
        ...knexDisposalProblems((connection as any).getKnex?.()?.client, `${label}.getKnex()`),
      ],
      apply() {
        const undo = [
          replaceMethod(
            owner!,
            'begin',
            (base) =>
              async function (this: any, options: any = {}) {
                throwIfLockLost(); // a body whose lock was lost (a flush after it) never opens a transaction elsewhere
                if (options.ctx) {
                  const trx = await base.call(this, options);
                  const root = rootStateOf(options.ctx);
                  if (root) {
                    registerTransaction(trx, root);
                    savepointOpened(root); // a nested transaction: a savepoint of its root
                  }
                  return trx;
                }
                if (!installationFor(this)) return base.call(this, options);
                const knex = this.getKnex();
                const given = options[PINNED_RAW];
                const raw = given ?? (await knex.client.acquireConnection());
                try {
                  const pinned = Object.create(knex, {
                    transaction: { value: (handler: unknown, config: object = {}) => knex.transaction(handler, { ...config, connection: raw }) },
                  });
                  const self = Object.create(this, { getKnex: { value: () => pinned } });
                  const trx = await base.call(self, options);
                  const root = newRootState(raw, given ? options[OWNS_RAW] === true : true);
                  registerTransaction(trx, root);
                  // MikroORM spells levels in lower case ('read committed'); the model keeps ormlock's (READ COMMITTED)
                  began(root, typeof options.isolationLevel === 'string' ? (options.isolationLevel.toUpperCase() as IsolationLevel) : undefined);
                  return trx;
                } catch (error) {
                  if (!given) await knex.client.releaseConnection(raw);
                  throw error;
                }
              },
          ),
          replaceMethod(
            owner!,
            'commit',
            (base) =>
              function (this: any, ctx: any, ...rest: unknown[]) {
                return endingRoot(this, ctx, 'commit', () => base.call(this, ctx, ...rest));
              },
          ),
          replaceMethod(
            owner!,
            'rollback',
            (base) =>
              function (this: any, ctx: any, ...rest: unknown[]) {
                return endingRoot(this, ctx, 'rollback', () => base.call(this, ctx, ...rest));
              },
          ),
        ];
        return () => undo.reverse().forEach((u) => u());
      },
    },
  ];
}

/**
 * Runs the COMMIT/ROLLBACK of `ctx`; for a pinned root, then ends what it held (commit hooks
 * included) and gives its connection back. A savepoint rolled back drops its commit hooks.
 */
async function endingRoot(connection: any, ctx: any, outcome: CompletionOutcome, end: () => Promise<unknown>): Promise<unknown> {
  const root = ctx && (typeof ctx === 'object' || typeof ctx === 'function') ? rootStateOf(ctx) : undefined;
  if (root && 'savepointName' in ctx && outcome === 'rollback') {
    const savepoint = knownConnection(ctx);
    if (savepoint) dropHooks(savepoint);
  }
  if (!root || root.released) return end();
  if ('savepointName' in ctx) {
    // a nested transaction: RELEASE / ROLLBACK TO its savepoint (the connection model follows)
    const result = await end();
    if (outcome === 'commit') savepointReleased(root);
    else rolledBackTo(root);
    return result;
  }
  let result: unknown;
  try {
    result = await end();
  } catch (error) {
    await finishRoot(connection, root, 'rollback').catch(() => undefined);
    throw error;
  }
  await finishRoot(connection, root, outcome);
  return result;
}

async function finishRoot(connection: any, root: RootState, outcome: CompletionOutcome): Promise<void> {
  const members = [...root.members];
  let failure: unknown;
  try {
    // the model ends the transaction; its end handlers run on this connection (stand-in locks released)
    try {
      await finishTransaction(members[0] ?? root, outcome);
    } catch (error) {
      failure = error;
    }
    await transactionCompleted(members, outcome);
  } finally {
    if (root.ownsRaw && !root.released) {
      root.released = true;
      await giveBack(connection, connection.getKnex().client, root.raw, root);
    } else {
      root.released = true;
    }
  }
  if (failure) throw failure;
}

/**
 * `EntityManager.prototype.transactional`: MikroORM's own transactions (and its `@Transactional`)
 * are ambient transactions of ormlock too — ormlock calls inside join them, never open a second
 * connection beside them. When the connection dies while ormlock holds a lock taken inside, the
 * call rejects with LockLostError (src/orm/own-scope-lost.ts).
 */
export function transactionalPatch(em: EntityManager): MikroPatch {
  const owner = ownerOf(em, 'transactional');
  const label = 'EntityManager.prototype';
  return {
    name: `${label}.transactional`,
    probe: () => [
      ...expectMethod(owner, label, 'transactional', ['cb']),
      ...expectMethod(ownerOf(em, 'getTransactionContext'), label, 'getTransactionContext'),
    ],
    apply() {
      return replaceMethod(
        owner!,
        'transactional',
        (base) =>
          function (this: any, cb: (em: EntityManager) => unknown, options?: unknown) {
            const inst = installationFor(this);
            if (!inst || typeof cb !== 'function') return base.call(this, cb, options);
            let connection: object | undefined;
            const run: Promise<unknown> = base.call(
              this,
              (em: EntityManager) => {
                const trx = em.getTransactionContext();
                if (!trx) return cb(em);
                const own = connectionFor(em, trx);
                connection = own;
                return ownScopeBody(inst, own, () => runWithAmbientConnection(inst, own, async () => cb(em)));
              },
              options,
            );
            // a lock ormlock took inside died with the connection: LockLostError, not the driver's error
            return run.catch((error) => {
              throw lostInOwnScope(inst, connection, error) ?? error;
            });
          },
      );
    },
  };
}
