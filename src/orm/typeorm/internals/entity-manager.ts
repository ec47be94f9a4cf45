import { EntityManager } from 'typeorm';
import { runWithAmbientConnection } from '../../../context/transaction';
import { installationOf } from '../../../installations';
import { lostInOwnScope, ownScopeBody } from '../../own-scope-lost';
import { dataSourceOf } from '../compat';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';

const LABEL = 'EntityManager.prototype';

/**
 * TypeORM's own transactions (`dataSource.transaction(cb)`, `manager.transaction(cb)`) become
 * ambient transactions: while `cb` runs, ormlock calls inside join them on their connection
 * instead of opening a second one beside them. When the connection dies while ormlock holds a lock
 * taken inside, the call rejects with LockLostError (src/orm/own-scope-lost.ts).
 */
export const entityManagerTransactionPatch: InternalPatch = {
  name: `${LABEL}.transaction`,
  probe: () => expectMethod(EntityManager.prototype, LABEL, 'transaction', ['startTransaction', 'commitTransaction']),
  apply() {
    return replaceMethod(
      EntityManager.prototype,
      'transaction',
      (base) =>
        function (this: EntityManager, isolationOrFn: unknown, maybeFn?: unknown) {
          const inst = installationOf(dataSourceOf(this));
          const fn = (typeof isolationOrFn === 'function' ? isolationOrFn : maybeFn) as ((em: EntityManager) => unknown) | undefined;
          if (!inst || typeof fn !== 'function') return base.apply(this, [isolationOrFn, maybeFn]);
          let connection: object | undefined;
          const wrapped = (em: EntityManager) => {
            connection = em.queryRunner;
            const qr = em.queryRunner;
            return qr ? ownScopeBody(inst, qr, () => runWithAmbientConnection(inst, qr, () => fn(em))) : fn(em);
          };
          const run: Promise<unknown> = typeof isolationOrFn === 'function' ? base.call(this, wrapped) : base.call(this, isolationOrFn, wrapped);
          // a lock ormlock took inside died with the connection: LockLostError, not the driver's error
          return run.catch((error) => {
            throw lostInOwnScope(inst, connection, error) ?? error;
          });
        },
    );
  },
};
