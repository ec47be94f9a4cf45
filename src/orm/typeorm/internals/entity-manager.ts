import { EntityManager } from 'typeorm';
import { runWithAmbientConnection } from '../../../context/transaction';
import { installationOf } from '../../installations';
import { dataSourceOf } from '../compat';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';

const LABEL = 'EntityManager.prototype';

/**
 * TypeORM's own transactions (`dataSource.transaction(cb)`, `manager.transaction(cb)`) become
 * ambient transactions: while `cb` runs, ormlock calls inside join them on their connection
 * instead of opening a second one beside them.
 */
export const entityManagerTransactionPatch: InternalPatch = {
  name: `${LABEL}.transaction`,
  probe: () => expectMethod(EntityManager.prototype, LABEL, 'transaction', ['startTransaction', 'commitTransaction']),
  apply() {
    this.restore = replaceMethod(EntityManager.prototype, 'transaction', (base) =>
      function (this: EntityManager, isolationOrFn: unknown, maybeFn?: unknown) {
        const inst = installationOf(dataSourceOf(this));
        const fn = (typeof isolationOrFn === 'function' ? isolationOrFn : maybeFn) as ((em: EntityManager) => unknown) | undefined;
        if (!inst || typeof fn !== 'function') return base.apply(this, [isolationOrFn, maybeFn]);
        const wrapped = (em: EntityManager) => (em.queryRunner ? runWithAmbientConnection(inst, em.queryRunner, () => fn(em)) : fn(em));
        return typeof isolationOrFn === 'function' ? base.call(this, wrapped) : base.call(this, isolationOrFn, wrapped);
      },
    );
  },
  restore() {},
};
