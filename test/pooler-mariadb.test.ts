import { expect } from 'chai';
import { Column, DataSource, Entity, PrimaryGeneratedColumn, Tree, TreeChildren, TreeParent } from 'typeorm';
import { MikroORM } from '@mikro-orm/core';
import {
  LockConfigError,
  Semaphore,
  createFencingTable,
  createScheduledLockTable,
  installLocking,
  lockedTree,
  transaction,
  withAdvisoryLock,
  withScheduledLock,
  withSemaphore,
  type LockingHandle,
} from '../src';
import { installLocking as installMikro } from '../src/orm/mikro-orm';
import { AdvisoryDoc, PlainDoc } from './fixtures/advisory-entities';
import { MkSlot } from './fixtures/mikro-advisory';
import { LockedNs, PlainNs } from './fixtures/trees';
import { dataSourceOptions } from './support/backends';
import { createMikroOrm } from './support/mikro-suite';
import { rejection } from './support/rejection';

/**
 * MariaDB with installLocking's `pooler: 'transaction'` declared on a direct connection (no
 * MariaDB pooler runs here; a user declares it for ProxySQL, MaxScale or RDS Proxy for MySQL). MariaDB has no
 * transaction-scoped advisory lock: ormlock's "transaction scope" there is GET_LOCK, a session
 * lock released right after COMMIT (src/locks/advisory-plan.ts). Behind a transaction pooler
 * that release may run on another server connection, so every advisory lock is refused, in
 * either scope: withAdvisoryLock (test/pgbouncer.test.ts), and here the entity-class
 * @AdvisoryLock, @LockedTree / lockedTree(), and the database semaphore (session scope, and
 * transaction scope on both of its paths, @Semaphore too). Each refusal runs nothing and writes
 * nothing; the control is the same DataSource installed with `pooler: 'none'`, where each works.
 * What needs no session state (the database scheduled lock) is not refused.
 */

const NS = `plmdb-${process.env.ORMLOCK_TEST_DB}`;
const MARIADB_REFUSED =
  /advisory locks on mariadb \(session locks, released after COMMIT\) cannot work behind a transaction-pooling connection pooler \((DataSource|MikroORM) .* is installed with pooler: 'transaction'\)/;
const SESSION_REFUSED = /session-scope advisory locks cannot work behind a transaction-pooling connection pooler/;
const DIRECT_ADVICE = /Install ormlock on a second DataSource\/MikroORM instance that connects to the database directly/;

/** The plain-function form of @LockedTree, on a class of this file. */
@Tree('nested-set')
@Entity('plmdb_fn_ns')
class FnNs {
  @PrimaryGeneratedColumn() id!: number;
  @Column() name!: string;
  @TreeChildren() children!: FnNs[];
  @TreeParent() parent?: FnNs | null;
}
lockedTree(FnNs);

/** @Semaphore on a method (transaction scope, the default). */
class Reports {
  runs = 0;
  @Semaphore(`plmdb-reports-${process.pid}`, 2)
  async render(): Promise<void> {
    this.runs++;
  }
}

/** A LockConfigError refusing an advisory lock on MariaDB behind a transaction pooler: why, and only the advice that helps there. */
function expectMariaDbRefusal(err: any): void {
  expect(err).to.be.instanceOf(LockConfigError);
  expect(err.message).to.match(MARIADB_REFUSED);
  expect(err.message).to.match(DIRECT_ADVICE);
  expect(err.message).not.to.contain("Use scope: 'transaction'");
  expect(err.details?.pooler ?? err.pooler).to.equal('transaction');
}

describe("MariaDB with pooler: 'transaction' declared: what holds a lock in the server session is refused [typeorm, mariadb]", function () {
  this.timeout(60_000);
  let ds: DataSource;

  before(async function () {
    const options = await dataSourceOptions('mariadb', [AdvisoryDoc, PlainDoc, LockedNs, PlainNs, FnNs], { poolSize: 6 });
    if (!options) return this.skip();
    ds = await new DataSource(options).initialize();
    await createFencingTable(ds);
    await createScheduledLockTable(ds);
  });

  after(async () => {
    if (ds?.isInitialized) await ds.destroy();
  });

  const count = (cls: Function, where: Record<string, unknown> = {}) => ds.getRepository(cls).countBy(where);

  describe("installed with pooler: 'transaction'", () => {
    let handle: LockingHandle;
    before(async () => {
      handle = await installLocking(ds, { pooler: 'transaction', namespace: NS });
    });
    after(() => handle?.uninstall());

    it("takes the declared mode (a direct connection: nothing detected): pooler 'transaction', poolerDetected false", () => {
      expect(handle.installation.settings).to.include({ pooler: 'transaction', poolerDetected: false });
    });

    it('entity-class @AdvisoryLock: the save is refused with LockConfigError, nothing written; the control entity without it saves', async () => {
      const docs = ds.getRepository(AdvisoryDoc);
      const err = await rejection(docs.save(docs.create({ slot: 71, n: 1 })));
      expectMariaDbRefusal(err);
      expect(err.message).to.match(/AdvisoryDoc/);
      expect(await count(AdvisoryDoc, { slot: 71 })).to.equal(0);
      const plain = ds.getRepository(PlainDoc);
      await plain.save(plain.create({ slot: 71, n: 1 }));
      expect(await count(PlainDoc, { slot: 71 })).to.equal(1);
    });

    it('@LockedTree: inserting the root is refused with LockConfigError, nothing written; the tree without it saves', async () => {
      const err = await rejection(ds.getRepository(LockedNs).save({ name: 'root', parent: null }));
      expectMariaDbRefusal(err);
      expect(err.message).to.match(/@LockedTree on LockedNs/);
      expect(await count(LockedNs)).to.equal(0);
      await ds.getRepository(PlainNs).save({ name: 'root', parent: null });
      expect(await count(PlainNs)).to.equal(1);
    });

    it('lockedTree(Class), the plain-function form: refused the same way', async () => {
      const err = await rejection(ds.getRepository(FnNs).save({ name: 'root', parent: null }));
      expectMariaDbRefusal(err);
      expect(err.message).to.match(/@LockedTree on FnNs/);
      expect(await count(FnNs)).to.equal(0);
    });

    describe('database semaphore', () => {
      it("withSemaphore(…, { scope: 'session' }): refused, the body never runs; the advice is the direct DataSource (transaction scope is refused on MariaDB too)", async () => {
        let ran = false;
        const err = await rejection(withSemaphore(`plmdb-s-${process.pid}`, 3, () => void (ran = true), { scope: 'session' }));
        expect(err).to.be.instanceOf(LockConfigError);
        expect(err.message).to.match(SESSION_REFUSED);
        expect(err.message).to.match(DIRECT_ADVICE);
        expect(err.message).not.to.contain("Use scope: 'transaction'");
        expect(ran).to.equal(false);
      });

      it('transaction scope, in a transaction of its own (the one-statement path): refused, the body never runs', async () => {
        let ran = false;
        expectMariaDbRefusal(await rejection(withSemaphore(`plmdb-t-${process.pid}`, 3, () => void (ran = true))));
        expect(ran).to.equal(false);
      });

      it("transaction scope inside the caller's transaction (the per-slot path): refused, the body never runs", async () => {
        let ran = false;
        expectMariaDbRefusal(await rejection(transaction(() => withSemaphore(`plmdb-c-${process.pid}`, 3, () => void (ran = true)))));
        expect(ran).to.equal(false);
      });

      it('@Semaphore on a method: refused, the method never runs', async () => {
        const reports = new Reports();
        expectMariaDbRefusal(await rejection(reports.render()));
        expect(reports.runs).to.equal(0);
      });
    });

    it('session-scope withAdvisoryLock on MariaDB: refused, and its advice is the direct DataSource only', async () => {
      const err = await rejection(withAdvisoryLock(`plmdb-a-${process.pid}`, () => 'ran', { scope: 'session' }));
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(SESSION_REFUSED);
      expect(err.message).to.match(DIRECT_ADVICE);
      expect(err.message).not.to.contain("Use scope: 'transaction'");
    });

    it('not refused: the database scheduled lock (one autocommit statement to take a run, one to end it; no session state)', async () => {
      let runs = 0;
      const run = await withScheduledLock(`plmdb-job-${process.pid}`, { lockAtMostFor: 5_000 }, () => void runs++);
      expect(run.ran).to.equal(true);
      expect(runs).to.equal(1);
    });
  });

  describe("control: the same DataSource installed with pooler: 'none'", () => {
    let handle: LockingHandle;
    before(async () => {
      handle = await installLocking(ds, { pooler: 'none', namespace: NS });
    });
    after(() => handle?.uninstall());

    it('entity-class @AdvisoryLock, @LockedTree and lockedTree() saves go through', async () => {
      const docs = ds.getRepository(AdvisoryDoc);
      await docs.save(docs.create({ slot: 72, n: 1 }));
      expect(await count(AdvisoryDoc, { slot: 72 })).to.equal(1);
      const root = await ds.getRepository(LockedNs).save({ name: 'root', parent: null });
      await ds.getRepository(LockedNs).save({ name: 'child', parent: root });
      expect(await count(LockedNs)).to.equal(2);
      await ds.getRepository(FnNs).save({ name: 'root', parent: null });
      expect(await count(FnNs)).to.equal(1);
    });

    it('the semaphore runs in both scopes and on both paths, and @Semaphore', async () => {
      const name = `plmdb-ok-${process.pid}`;
      expect(await withSemaphore(name, 3, () => 'session', { scope: 'session' })).to.equal('session');
      expect(await withSemaphore(name, 3, () => 'own')).to.equal('own');
      expect(await transaction(() => withSemaphore(name, 3, () => 'caller'))).to.equal('caller');
      const reports = new Reports();
      await reports.render();
      expect(reports.runs).to.equal(1);
    });
  });
});

describe("MariaDB with pooler: 'transaction' declared [mikro-orm, mariadb]", function () {
  this.timeout(60_000);
  let orm: MikroORM | null = null;

  before(async function () {
    orm = await createMikroOrm('mariadb', [MkSlot], { poolSize: 4 });
    if (!orm) return this.skip();
    await orm.em.getConnection().execute('CREATE SEQUENCE IF NOT EXISTS `ormlock_fencing_seq`');
  });

  after(async () => {
    await orm?.close(true);
  });

  it("entity-class @AdvisoryLock on a MikroORM entity and the semaphore (both scopes) are refused; with pooler: 'none' they run", async () => {
    const refused = await installMikro(orm!, { pooler: 'transaction', namespace: NS });
    try {
      const em = orm!.em.fork();
      em.create(MkSlot, { owner: `mk-${process.pid}` });
      const err = await rejection(em.flush());
      expectMariaDbRefusal(err);
      expect(err.message).to.match(/MkSlot/);
      expect(await orm!.em.fork().count(MkSlot, { owner: `mk-${process.pid}` })).to.equal(0);
      const session = await rejection(withSemaphore(`plmdb-mk-${process.pid}`, 2, () => 'ran', { scope: 'session' }));
      expect(session).to.be.instanceOf(LockConfigError);
      expect(session.message).to.match(SESSION_REFUSED);
      expectMariaDbRefusal(await rejection(withSemaphore(`plmdb-mk-${process.pid}`, 2, () => 'ran')));
    } finally {
      refused.uninstall();
    }
    const direct = await installMikro(orm!, { pooler: 'none', namespace: NS });
    try {
      const em = orm!.em.fork();
      em.create(MkSlot, { owner: `mk-${process.pid}` });
      await em.flush();
      expect(await orm!.em.fork().count(MkSlot, { owner: `mk-${process.pid}` })).to.equal(1);
      expect(await withSemaphore(`plmdb-mk-${process.pid}`, 2, () => 'ran', { scope: 'session' })).to.equal('ran');
      expect(await withSemaphore(`plmdb-mk-${process.pid}`, 2, () => 'ran')).to.equal('ran');
    } finally {
      direct.uninstall();
    }
  });
});
