import { expect } from 'chai';
import { Column, Entity, EventSubscriber, PrimaryGeneratedColumn, type EntitySubscriberInterface } from 'typeorm';
import { installLocking, LockConfigError, LockNotAvailableError, transaction, withLock, withPessimistic } from '../../src';
import { installLocking as installMikro } from '../../src/orm/mikro-orm';
import { MkCounter } from '../fixtures/mikro-counters';
import { BACKENDS, createDataSource } from '../support/backends';
import { createMikroOrm } from '../support/mikro-suite';
import { rejection } from './support';

@Entity('cov_inst_rows')
class CovRow {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int', default: 0 }) value!: number;
}

/** The application's own subscriber: a plain TypeORM program reads it as `dataSource.subscribers[0]`. */
@EventSubscriber()
class UserSubscriber implements EntitySubscriberInterface {
  loaded = 0;
  afterLoad() {
    this.loaded += 1;
  }
}

for (const name of BACKENDS) {
  describe(`coverage: installLocking changes nothing a plain TypeORM program observes, and installs once [${name}]`, () => {
    it("[coverage install subscribers] the user's subscribers keep their positions: dataSource.subscribers[0] is the user's, before and after install and uninstall", async function () {
      const ds = await createDataSource(name, [CovRow], { subscribers: [UserSubscriber] });
      if (!ds) return this.skip();
      try {
        const mine = ds.subscribers[0];
        expect(mine).to.be.instanceOf(UserSubscriber);
        const handle = await installLocking(ds);
        expect(ds.subscribers[0]).to.equal(mine);
        expect(ds.subscribers.length).to.be.greaterThan(1);
        // ormlock still works with its subscribers after the user's
        const row = await ds.getRepository(CovRow).save({ value: 1 });
        await withLock(await ds.getRepository(CovRow).findOneByOrFail({ id: row.id }), async () => undefined);
        handle.uninstall();
        expect(ds.subscribers).to.deep.equal([mine]);
      } finally {
        await ds.destroy();
      }
    });

    it("[coverage install concurrent] two concurrent installLocking calls: exactly one wins, the other gets a named LockConfigError; after uninstall only the user's subscribers remain", async function () {
      const ds = await createDataSource(name, [CovRow], { subscribers: [UserSubscriber] });
      if (!ds) return this.skip();
      try {
        const results = await Promise.allSettled([installLocking(ds), installLocking(ds)]);
        const won = results.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<Awaited<ReturnType<typeof installLocking>>>[];
        const lost = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
        expect(won).to.have.length(1);
        expect(lost).to.have.length(1);
        expect(lost[0].reason).to.be.instanceOf(LockConfigError);
        expect(lost[0].reason.message).to.contain("another installLocking call on DataSource 'default' is under way");
        const withOrmlock = ds.subscribers.length;
        won[0].value.uninstall();
        expect(ds.subscribers.length).to.equal(1);
        // installing again after uninstall works and adds the same number of subscribers
        const again = await installLocking(ds);
        expect(ds.subscribers.length).to.equal(withOrmlock);
        again.uninstall();
      } finally {
        await ds.destroy();
      }
    });

    it("[coverage install defaults] an installed lockTimeoutMs does not forbid a call's onLocked 'nowait' or 'skip_locked' (the call's options win before validation)", async function () {
      const ds = await createDataSource(name, [CovRow]);
      if (!ds) return this.skip();
      const handle = await installLocking(ds, { lockTimeoutMs: 2000 });
      try {
        const repo = ds.getRepository(CovRow);
        const row = await repo.save({ value: 0 });
        let release!: () => void;
        const held = new Promise<void>((r) => (release = r));
        let locked!: () => void;
        const isLocked = new Promise<void>((r) => (locked = r));
        const holder = withLock(await repo.findOneByOrFail({ id: row.id }), async () => {
          locked();
          await held;
        });
        await isLocked;
        try {
          const nowait = await rejection(
            transaction(async () => withLock(await repo.findOneByOrFail({ id: row.id }), async () => undefined, { onLocked: 'nowait' })),
          );
          expect(nowait).to.be.instanceOf(LockNotAvailableError);
          const skipped = await withPessimistic(() => repo.findBy({ id: row.id }), { onLocked: 'skip_locked' });
          expect(skipped).to.deep.equal([]);
          const started = Date.now();
          const nowaitRead = await rejection(withPessimistic(() => repo.findOneBy({ id: row.id }), { onLocked: 'nowait' }));
          expect(nowaitRead).to.be.instanceOf(LockNotAvailableError);
          expect(Date.now() - started).to.be.lessThan(1500);
        } finally {
          release();
          await holder;
        }
      } finally {
        handle.uninstall();
        await ds.destroy();
      }
    });

    it('[coverage install concurrent-mikro-orm] two concurrent installLocking(orm) calls (ormlock/mikro-orm): exactly one wins, the other gets a named LockConfigError', async function () {
      const orm = await createMikroOrm(name, [MkCounter]);
      if (!orm) return this.skip();
      try {
        const results = await Promise.allSettled([installMikro(orm), installMikro(orm)]);
        const won = results.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<Awaited<ReturnType<typeof installMikro>>>[];
        const lost = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
        expect(won).to.have.length(1);
        expect(lost[0]?.reason).to.be.instanceOf(LockConfigError);
        expect(lost[0].reason.message).to.contain("another installLocking call on MikroORM 'default' is under way");
        won[0].value.uninstall();
      } finally {
        await orm.close();
      }
    });
  });
}
