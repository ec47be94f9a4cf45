/**
 * TypeORM's own transactions are ambient transactions: ormlock's
 * transaction(), lock(), withLock() and withAdvisoryLock() inside `dataSource.transaction(cb)` /
 * `manager.transaction(cb)` join them on their connection — one connection, the outer rollback
 * undoes everything, no hang — and a QueryRunner's manual startTransaction() is joined when the
 * call names the runner (`{ dataSource: queryRunner }` or `queryRunner.manager`).
 */
import { expect } from 'chai';
import type { EntityManager } from 'typeorm';
import { advisoryLockExists, inTransaction, lock, transaction, withAdvisoryLock, withLock, currentManager, LockConfigError } from '../src';
import { runInFrame } from '../src/context/store';
import { EDGE_ENTITIES, EdgeAccount } from './fixtures/edges';
import { describeEachBackend } from './support/suite';

/** Runs `fn` as another request would: no ambient transaction, no held lock. */
const outside = <T>(fn: () => Promise<T>) => runInFrame({ txs: new Map(), values: new Map() }, fn);

describeEachBackend('edges: TypeORM’s own transactions are ambient', EDGE_ENTITIES, (env) => {
  const connId = async (run: (sql: string) => Promise<any[]>) => String((await run(env.handle.dialect.connectionIdSql))[0].connectionId);
  const accounts = () => env.ds.getRepository(EdgeAccount);
  const fresh = (name: string, credits = 100) => accounts().save(accounts().create({ name, credits }));
  const credits = async (id: number) => (await outside(() => accounts().findOneByOrFail({ id }))).credits;

  for (const via of ['dataSource.transaction', 'manager.transaction'] as const) {
    const open = <T>(cb: (em: EntityManager) => Promise<T>) => (via === 'dataSource.transaction' ? env.ds.transaction(cb) : env.ds.manager.transaction(cb));

    it(`${via}(cb): ormlock transaction() inside runs on cb's connection, writes a row cb holds without a hang, and the outer rollback undoes it`, async () => {
      const a = await fresh(`tx-${via}`);
      const err = await open(async (em) => {
        const outer = await connId((s) => em.query(s));
        await em.update(EdgeAccount, a.id, { credits: 90 }); // cb's transaction now holds the row
        expect(inTransaction(), 'inTransaction() inside cb').to.equal(true);
        await transaction(async () => {
          expect(await connId((s) => env.ds.query(s)), 'the inner transaction is on cb’s connection').to.equal(outer);
          expect(currentManager().queryRunner).to.equal(em.queryRunner);
          const row = await accounts().findOneByOrFail({ id: a.id }); // sees cb's uncommitted write
          row.credits -= 10;
          await accounts().save(row); // would wait forever on a second connection
        });
        expect((await em.findOneByOrFail(EdgeAccount, { id: a.id })).credits).to.equal(80);
        throw new Error('outer fails');
      }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).to.equal('outer fails');
      expect(await credits(a.id), 'the outer rollback undid the inner part too').to.equal(100);
    });

    it(`${via}(cb): lock() and withLock() inside take the row on cb's connection (no second one), and the outer rollback undoes them`, async () => {
      const a = await fresh(`lock-${via}`);
      const err = await open(async (em) => {
        const outer = await connId((s) => em.query(s));
        await em.update(EdgeAccount, a.id, { credits: 95 });
        const loaded = await em.findOneByOrFail(EdgeAccount, { id: a.id });
        // on another connection both would time out behind cb's own row lock
        await lock(loaded, { timeoutMs: 2000 });
        expect(loaded.credits).to.equal(95);
        await withLock(
          loaded,
          async (u) => {
            expect(await connId((s) => env.ds.query(s))).to.equal(outer);
            u.credits -= 5;
            await em.save(u); // cb's own manager, inside withLock
          },
          { timeoutMs: 2000 },
        );
        // the row is locked by cb's transaction: another request cannot take it
        const other = await outside(() => withLock(a, async () => 'taken', { onLocked: 'nowait' })).then(
          () => null,
          (e) => e,
        );
        expect(other?.name, 'another request is refused while cb holds the row').to.equal('LockNotAvailableError');
        throw new Error('outer fails');
      }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).to.equal('outer fails');
      expect(await credits(a.id)).to.equal(100);
    });
  }

  it('dataSource.transaction(cb): withAdvisoryLock inside takes the lock on cb’s connection and holds it until cb ends', async () => {
    const key = `edge-tx-advisory-${env.name}`;
    let held: boolean | undefined;
    await env.ds.transaction(async (em) => {
      const outer = await connId((s) => em.query(s));
      await withAdvisoryLock(key, async (ctx) => {
        expect(ctx.acquired).to.equal(true);
        expect(await connId((s) => ctx.queryRunner.query(s))).to.equal(outer);
      });
      // transaction scope: held until cb's transaction ends
      held = await outside(() => withAdvisoryLock(key, async () => false, { timeoutMs: 0 })).then(
        () => false,
        () => true,
      );
    });
    expect(held, 'another context could not take the key while cb ran').to.equal(true);
    expect(await advisoryLockExists(key)).to.equal(false);
  });

  it('a QueryRunner’s manual startTransaction(): ormlock calls given { dataSource: queryRunner } or queryRunner.manager join it', async () => {
    const a = await fresh('manual-qr');
    const qr = env.ds.createQueryRunner();
    await qr.connect();
    try {
      const outer = await connId((s) => qr.query(s));
      await qr.startTransaction();
      await qr.manager.update(EdgeAccount, a.id, { credits: 70 });
      await transaction(
        async () => {
          expect(await connId((s) => env.ds.query(s))).to.equal(outer);
          const row = await accounts().findOneByOrFail({ id: a.id });
          row.credits -= 10;
          await accounts().save(row);
        },
        { dataSource: qr },
      );
      const loaded = await qr.manager.findOneByOrFail(EdgeAccount, { id: a.id });
      await withLock(
        loaded,
        async (u) => {
          expect(await connId((s) => currentManager().query(s))).to.equal(outer);
          u.credits -= 10;
          await qr.manager.save(u);
        },
        { dataSource: qr.manager, timeoutMs: 2000 },
      );
      await lock(loaded, { dataSource: qr, timeoutMs: 2000 });
      await withAdvisoryLock(
        'edge-manual-qr',
        async (ctx) => {
          expect(await connId((s) => ctx.queryRunner.query(s))).to.equal(outer);
        },
        { dataSource: qr },
      );
      expect(qr.isTransactionActive, 'ormlock did not end the runner’s transaction').to.equal(true);
      expect((await qr.manager.findOneByOrFail(EdgeAccount, { id: a.id })).credits).to.equal(50);
      await qr.rollbackTransaction();
    } finally {
      await qr.release();
    }
    expect(await credits(a.id), 'the runner’s rollback undid what ormlock did inside it').to.equal(100);
    expect(await advisoryLockExists('edge-manual-qr'), 'the advisory lock ended with the runner’s transaction').to.equal(false);
  });

  it('a QueryRunner given as { dataSource } with no open transaction: transaction() opens one on that runner, commits it, and leaves the runner to its owner', async () => {
    const a = await fresh('manual-qr-idle');
    const qr = env.ds.createQueryRunner();
    await qr.connect();
    try {
      const mine = await connId((s) => qr.query(s));
      await transaction(
        async () => {
          expect(await connId((s) => env.ds.query(s))).to.equal(mine);
          await accounts().update(a.id, { credits: 1 });
        },
        { dataSource: qr },
      );
      expect(qr.isReleased).to.equal(false);
      expect(qr.isTransactionActive).to.equal(false);
    } finally {
      await qr.release();
    }
    expect(await credits(a.id)).to.equal(1);
  });

  it('a released QueryRunner as { dataSource } is a LockConfigError before anything is sent', async () => {
    const qr = env.ds.createQueryRunner();
    await qr.connect();
    await qr.release();
    env.log.start();
    const err = await transaction(async () => 1, { dataSource: qr }).then(
      () => null,
      (e) => e,
    );
    expect(env.log.stop()).to.deep.equal([]);
    expect(err).to.be.instanceOf(LockConfigError);
    expect(err.message).to.contain('released');
  });
});
