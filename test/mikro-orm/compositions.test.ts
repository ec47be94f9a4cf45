/**
 * Compositions on MikroORM: a lock dropped by a savepoint rollback (a nested em.transactional),
 * isolation inside a running transaction, sibling transactions on a session lock's pinned connection.
 */
import type { EntityManager } from '@mikro-orm/core';
import { expect } from 'chai';
import { LockConfigError, currentManager, transaction, withAdvisoryLock } from '../../src';
import { runInFrame } from '../../src/context/store';
import { MkOrder, MkUser } from '../fixtures/mikro-billing';
import { describeEachMikroBackend } from '../support/mikro-suite';

const outside = <T>(fn: () => Promise<T>) => runInFrame({ txs: new Map(), values: new Map() }, fn);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describeEachMikroBackend('compositions', [MkUser, MkOrder], (env) => {
  const freeElsewhere = async (key: string) => (await outside(() => withAdvisoryLock(key, () => true, { timeoutMs: 0, onTimeout: 'skip' }))) === true;
  const insert = async (credits: number) => {
    const em = currentManager() as EntityManager;
    em.create(MkUser, { credits });
    await em.flush();
  };
  const count = (credits: number) => outside(() => env.orm.em.fork().count(MkUser, { credits }));

  it('a lock taken in a rolled-back nested em.transactional() is taken again by the next call, and held against others', async () => {
    let second: boolean | undefined;
    let elsewhere: boolean | undefined;
    await transaction(async () => {
      await (currentManager() as EntityManager)
        .transactional(async () => {
          await withAdvisoryLock('mk-cmp-sp', async () => undefined);
          throw new Error('undo');
        })
        .catch(() => undefined);
      await withAdvisoryLock('mk-cmp-sp', async ({ acquired }) => {
        second = acquired;
        elsewhere = await freeElsewhere('mk-cmp-sp');
      });
    });
    if (env.handle.dialect.capabilities.rollbackToSavepointReleasesLocks) expect(second, 'taken again').to.equal(true);
    expect(elsewhere).to.equal(false);
    expect(await freeElsewhere('mk-cmp-sp')).to.equal(true);
  });

  it('isolation: asking for SERIALIZABLE inside a default transaction (also em.transactional) is a LockConfigError', async () => {
    const inTx = await transaction(() =>
      transaction(async () => 'ran', { isolation: 'SERIALIZABLE' }).then(
        () => undefined,
        (e) => e,
      ),
    );
    expect(inTx).to.be.instanceOf(LockConfigError);
    const inEm = await outside(() =>
      env.orm.em.fork().transactional(() =>
        transaction(async () => 'ran', { isolation: 'SERIALIZABLE' }).then(
          () => undefined,
          (e) => e,
        ),
      ),
    );
    expect(inEm).to.be.instanceOf(LockConfigError);
  });

  it('a fork the user began (em.begin) and names as { dataSource }: ormlock calls join its transaction — its level counts, its locks end with its rollback', async () => {
    for (const begun of [undefined, 'read committed'] as const) {
      const fork = env.orm.em.fork();
      await fork.begin(begun ? { isolationLevel: begun as never } : {});
      try {
        const refused = await transaction(async () => 'ran', { dataSource: fork, isolation: 'SERIALIZABLE' }).then(
          () => undefined,
          (e) => e,
        );
        expect(refused).to.be.instanceOf(LockConfigError);
        const level = begun ? 'READ COMMITTED' : env.handle.dialect.capabilities.defaultIsolation;
        expect(await transaction(async () => 'joined', { dataSource: fork, isolation: level })).to.equal('joined');
        await withAdvisoryLock(
          `mk-cmp-begun-${process.pid}`,
          async () => {
            const em = currentManager(env.orm) as EntityManager;
            expect(em.getTransactionContext(), "the body runs in the fork's transaction").to.equal(fork.getTransactionContext());
          },
          { dataSource: fork },
        );
        expect(await freeElsewhere(`mk-cmp-begun-${process.pid}`), "a transaction-scope lock: held until the fork's transaction ends").to.equal(false);
      } finally {
        await fork.rollback();
      }
      expect(await freeElsewhere(`mk-cmp-begun-${process.pid}`)).to.equal(true);
    }
  });

  it('inside a session lock, Promise.all of two transaction(): one after another; A commits, B rolls back alone', async () => {
    const order: string[] = [];
    const results = await withAdvisoryLock(
      'mk-cmp-pin',
      () =>
        Promise.allSettled([
          transaction(async () => {
            order.push('A+');
            await insert(7101);
            await sleep(50);
            order.push('A-');
          }),
          transaction(async () => {
            order.push('B+');
            await insert(7102);
            throw new Error('boom');
          }),
        ]),
      { scope: 'session' },
    );
    expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected']);
    expect(order).to.deep.equal(['A+', 'A-', 'B+']);
    expect(await count(7101)).to.equal(1);
    expect(await count(7102)).to.equal(0);
  });
});
