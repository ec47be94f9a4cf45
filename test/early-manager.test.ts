/**
 * The DataSource's own EntityManager taken before installLocking — what NestJS injects with
 * `@InjectEntityManager()`, or `const em = dataSource.manager` at start-up — runs inside the
 * ambient transaction like `dataSource.manager` read at the call (PostgreSQL and MariaDB).
 * The concurrency proof (20 charges through it, exact; the control loses) is in nestjs.test.ts.
 */
import { expect } from 'chai';
import type { EntityManager } from 'typeorm';
import { installLocking, transaction, type LockingHandle } from '../src';
import { BillUser } from './fixtures/billing';
import { BACKENDS, createDataSource } from './support/backends';

for (const backend of BACKENDS) {
  describe(`a manager taken before installLocking [${backend}]`, function () {
    let early: EntityManager;
    let handle: LockingHandle | undefined;
    let ds: Awaited<ReturnType<typeof createDataSource>>;

    before(async function () {
      ds = await createDataSource(backend, [BillUser]);
      if (!ds) return this.skip();
      early = ds.manager; // before installation, as Nest's EntityManager provider does
      handle = await installLocking(ds);
    });
    after(async () => {
      handle?.uninstall();
      if (ds?.isInitialized) await ds.destroy();
    });

    it('runs on the transaction: its writes roll back with it and are invisible outside before commit', async () => {
      let seenOutside = -1;
      const err = await transaction(async () => {
        const saved = await early.save(early.create(BillUser, { credits: 1, name: 'early-rollback' }));
        expect(early.queryRunner, 'the ambient connection').to.equal(ds!.manager.queryRunner);
        const outside = ds!.createQueryRunner();
        seenOutside = Number((await outside.query(`SELECT COUNT(*) AS n FROM bill_users WHERE id = ${saved.id}`))[0].n);
        await outside.release();
        throw new Error('boom');
      }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).to.equal('boom');
      expect(seenOutside).to.equal(0);
      expect(await early.countBy(BillUser, { name: 'early-rollback' })).to.equal(0);
    });

    it('outside a transaction it is the plain manager again, and uninstall gives its property back', async () => {
      expect(early.queryRunner).to.equal(undefined);
      handle!.uninstall();
      handle = undefined;
      expect(Object.prototype.hasOwnProperty.call(early, 'queryRunner')).to.equal(false);
      expect(await early.countBy(BillUser, {})).to.be.a('number');
    });
  });
}
