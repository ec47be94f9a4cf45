import { expect } from 'chai';
import { MikroORM, type Options } from '@mikro-orm/core';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import { DataSource, type DataSourceOptions, type FindOptionsWhere, type Repository } from 'typeorm';
import {
  AdvisoryLock,
  LockConfigError,
  Redlock,
  createFencingTable,
  StaleEntityError,
  createOrFind,
  currentManager,
  installLocking,
  transaction,
  withAdvisoryLock,
  withLock,
  type LockingHandle,
} from '../src';
import { installLocking as installMikro, type MikroOrmLockingHandle } from '../src/orm/mikro-orm';
import { installTargets } from '../src/nestjs/options';
import { Barrier, race } from '../src/testing';
import { BillOrder, BillUser, Billing } from './fixtures/billing';
import { Counter, CounterService, PlainCounter } from './fixtures/counter';
import { Account } from './fixtures/optimistic-models';
import { MkAccount } from './fixtures/mikro-counters';
import { MkTally } from './fixtures/topology';
import { Overlap } from './fixtures/two-sources';
import { BACKENDS, dataSourceOptions } from './support/backends';
import { describeServerCheck, endServers, startPgBouncer, pgBouncerUnavailable, type PgBouncer } from './support/pgbouncer';
import { startOrSkip, unavailableServer } from './support/postgres-user';
import { sharedRedisClient } from './support/redis-servers';
import { sleep } from './support/suite';
import { reasons } from './support/rejection';

/**
 * Production set-ups: ormlock through a real PgBouncer (Debian's package, started by
 * test/support/pgbouncer.ts) in transaction mode. Every strategy that holds through it is exact
 * under 20 racing callers (each with its control), session-scope advisory locks are refused (and a
 * control shows that they overlap through PgBouncer when they are not), and at the end no lock and
 * no setting is left on any server connection, checked on the server itself.
 */

const N = 20;
/** Server connections per pool: fewer than the racing callers, so transactions share them. */
const POOL = 6;
const ENTITIES = [BillUser, BillOrder, Counter, PlainCounter, Account];
const NS = `pgb-${process.env.ORMLOCK_TEST_DB}`;
const SESSION_REFUSED = /session-scope advisory locks cannot work behind a transaction-pooling connection pooler/;

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e) => e,
  );

/** `repo` whose findOneByOrFail arrives at `allRead` (a control's schedule: these reads all happen before anyone writes). */
const readingAt = <T extends object>(repo: Repository<T>, allRead: Barrier): Repository<T> =>
  repo.extend({ findOneByOrFail: (where: FindOptionsWhere<T> | FindOptionsWhere<T>[]) => allRead.wait(repo.findOneByOrFail(where)) });

describe('production set-ups: PgBouncer in transaction mode [typeorm, postgres]', function () {
  this.timeout(60_000);
  let bouncer: PgBouncer | undefined;
  let base: DataSourceOptions & { url: string };
  let dbName: string;
  let ds: DataSource;
  let handle: LockingHandle;
  let direct: Client;

  before(async function () {
    const why = pgBouncerUnavailable();
    if (why) unavailableServer(this, 'the PgBouncer tests', why);
    const options = await dataSourceOptions('postgres', ENTITIES);
    if (!options) return this.skip();
    base = options as DataSourceOptions & { url: string };
    dbName = new URL(base.url).pathname.slice(1);
    // the schema, made directly on the server
    await new DataSource(base).initialize().then((d) => d.destroy());
    bouncer = await startOrSkip(this, 'the PgBouncer tests', () =>
      startPgBouncer({ databases: { [dbName]: base.url, [`${dbName}_ctl`]: base.url }, poolSize: POOL }),
    );
    ds = await new DataSource({ ...base, url: bouncer.url(dbName), synchronize: false, dropSchema: false, poolSize: N + 5 } as DataSourceOptions).initialize();
    handle = await installLocking(ds, { namespace: NS });
    direct = new Client({ connectionString: base.url });
    await direct.connect();
  });

  after(async () => {
    handle?.uninstall();
    if (ds?.isInitialized) await ds.destroy();
    await direct?.end().catch(() => undefined);
    await bouncer?.stop();
  });

  describe('detection', () => {
    it("installLocking sees PgBouncer (its handshake pid is not the backend's) and takes pooler: 'transaction'", () => {
      expect(handle.installation.settings.pooler).to.equal('transaction');
      expect(handle.installation.settings.poolerDetected).to.equal(true);
    });

    it("a direct connection is pooler: 'none', not detected", async () => {
      const plain = await new DataSource({ ...base, synchronize: false, dropSchema: false, poolSize: 2 } as DataSourceOptions).initialize();
      try {
        const h = await installLocking(plain);
        expect(h.installation.settings).to.include({ pooler: 'none', poolerDetected: false });
        h.uninstall();
      } finally {
        await plain.destroy();
      }
    });

    it("pooler: 'none' through PgBouncer is a LockConfigError; 'session' is taken as declared", async () => {
      const other = await new DataSource({
        ...base,
        url: bouncer!.url(dbName),
        synchronize: false,
        dropSchema: false,
        poolSize: 2,
      } as DataSourceOptions).initialize();
      try {
        const err = await rejection(installLocking(other, { pooler: 'none' }));
        expect(err).to.be.instanceOf(LockConfigError);
        expect(err.message).to.match(/pooler: 'none' was given, but DataSource .* goes through a connection pooler/);
        const h = await installLocking(other, { pooler: 'session' });
        expect(h.installation.settings).to.include({ pooler: 'session', poolerDetected: false });
        h.uninstall();
      } finally {
        await other.destroy();
      }
    });
  });

  describe('session-scope advisory locks', () => {
    class Nightly {
      runs = 0;
      @AdvisoryLock('nightly-report', { scope: 'session' })
      async run(): Promise<void> {
        this.runs++;
      }
    }

    it('withAdvisoryLock(…, { scope: "session" }) is refused with LockConfigError naming why and what to use; the body never runs', async () => {
      let ran = false;
      const err = await rejection(withAdvisoryLock('report', () => void (ran = true), { scope: 'session' }));
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(SESSION_REFUSED);
      expect(err.message).to.match(/scope: 'transaction'/);
      expect(err.message).to.match(/connects to the database directly/);
      expect(ran).to.equal(false);
    });

    it('@AdvisoryLock(key, { scope: "session" }) on a method is refused the same way', async () => {
      const job = new Nightly();
      const err = await rejection(job.run());
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(SESSION_REFUSED);
      expect(err.method).to.equal('Nightly.run');
      expect(job.runs).to.equal(0);
    });

    it('control: without the refusal (an installation told pooler: "session"), session locks through PgBouncer overlap', async () => {
      const ctl = await new DataSource({
        ...base,
        url: bouncer!.url(`${dbName}_ctl`),
        synchronize: false,
        dropSchema: false,
        poolSize: N,
      } as DataSourceOptions).initialize();
      const ctlHandle = await installLocking(ctl, { namespace: NS, pooler: 'session' });
      const overlap = new Overlap();
      const racing = race(N, () =>
        withAdvisoryLock('ctl-key', () => overlap.run(() => sleep(100)), { scope: 'session', dataSource: ctl }).catch(() => undefined),
      );
      try {
        // a lock stranded on a server connection can keep later callers waiting for ever: bounded
        await Promise.race([racing, sleep(15_000)]);
      } finally {
        ctlHandle.uninstall();
        // the control may strand locks on its server connections: end them (its pool only), which
        // also ends a caller still waiting; only then close the DataSource
        await endServers(bouncer!, direct, `${dbName}_ctl`);
        await Promise.race([racing, sleep(5_000)]);
        await ctl.destroy().catch(() => undefined);
      }
      expect(overlap.max, 'bodies inside at once without a lock that holds').to.be.greaterThan(1);
    });
  });

  describe('strategies under 20 racing callers', () => {
    async function seedUser(credits: number) {
      const users = ds.getRepository(BillUser);
      const orders = ds.getRepository(BillOrder);
      const user = await users.save(users.create({ credits }));
      const orderIds: number[] = [];
      for (let i = 0; i < N; i++) orderIds.push((await orders.save(orders.create({ userId: user.id, price: 10 }))).id);
      return { user, orderIds, users, orders };
    }

    /** `allRead` (the control's only): the charges' reads of the user arrive there before any charge writes. */
    async function charges(method: 'chargeUnlocked' | 'chargePessimistic' | 'chargeWithLock', allRead?: Barrier) {
      const { user, orderIds, users, orders } = await seedUser(1000);
      const billing = new Billing(allRead ? readingAt(users, allRead) : users, orders);
      const failures = reasons(await race(N, (i) => billing[method](user.id, orderIds[i])));
      return { credits: (await users.findOneByOrFail({ id: user.id })).credits, failures };
    }

    it('control: charges in a transaction without a lock lose updates', async () => {
      // the first POOL charges (each waits inside its transaction, on one of PgBouncer's POOL server
      // connections) all read 1000 before any writes: they all write 990, POOL - 1 debits lost at least
      // (left to overlap, a loaded machine could run the charges one after another: none lost)
      const { credits, failures } = await charges('chargeUnlocked', new Barrier(POOL));
      expect(failures).to.deep.equal([]);
      console.log(`      control: ${credits} credits left, ${1000 - N * 10} expected`);
      expect(credits, `at least ${POOL - 1} of ${N} debits lost`).to.be.at.least(1000 - (N - (POOL - 1)) * 10);
    });

    it('@Pessimistic(): exact', async () => {
      const { credits, failures } = await charges('chargePessimistic');
      expect(failures).to.deep.equal([]);
      expect(credits).to.equal(1000 - N * 10);
    });

    it('withLock(entity, fn, { timeoutMs }): exact (the lock_timeout is SET LOCAL)', async () => {
      const users = ds.getRepository(BillUser);
      const user = await users.save(users.create({ credits: 1000 }));
      const failures = reasons(
        await race(N, async () => {
          const copy = await users.findOneByOrFail({ id: user.id });
          await withLock(
            copy,
            async (locked) => {
              await sleep(15);
              locked.credits -= 10;
              await users.save(locked);
            },
            { timeoutMs: 20_000 },
          );
        }),
      );
      expect(failures).to.deep.equal([]);
      expect((await users.findOneByOrFail({ id: user.id })).credits).to.equal(1000 - N * 10);
    });

    /**
     * Read, wait, write back one less, in a transaction; `lock` wraps it (or not: the control, whose
     * reads arrive at `allRead` before anyone writes; never on a locked path: the holder would wait
     * there for callers blocked on its lock).
     */
    async function debitRace(lock: (body: () => Promise<void>) => Promise<unknown>, allRead?: Barrier) {
      const users = ds.getRepository(BillUser);
      const user = await users.save(users.create({ credits: 1000 }));
      const failures = reasons(
        await race(N, () =>
          lock(() =>
            transaction(async () => {
              const reading = users.findOneByOrFail({ id: user.id });
              const row = await (allRead ? allRead.wait(reading) : reading);
              await sleep(15);
              await users.update({ id: user.id }, { credits: row.credits - 10 });
            }),
          ),
        ),
      );
      return { failures, credits: (await users.findOneByOrFail({ id: user.id })).credits };
    }

    it('control: the same debits without an advisory lock lose updates', async () => {
      // the first POOL debits (each waits inside its transaction, holding a server connection) all read 1000
      const { failures, credits } = await debitRace((body) => body(), new Barrier(POOL));
      expect(failures).to.deep.equal([]);
      console.log(`      control: ${credits} credits left, ${1000 - N * 10} expected`);
      expect(credits, `at least ${POOL - 1} of ${N} debits lost`).to.be.at.least(1000 - (N - (POOL - 1)) * 10);
    });

    it('transaction-scope withAdvisoryLock (timeoutMs set): exact, nothing left held', async () => {
      const { failures, credits } = await debitRace((body) => withAdvisoryLock('debit', body, { timeoutMs: 20_000 }));
      expect(failures).to.deep.equal([]);
      expect(credits).to.equal(1000 - N * 10);
    });

    it('control: increments without @Versioned lose updates', async () => {
      const repo = ds.getRepository(PlainCounter);
      const c = await repo.save(repo.create({ value: 0 }));
      // the reads are outside any transaction (their connection is back before they wait): all N
      // read 0 before anyone writes, so every one writes 1
      const service = new CounterService(readingAt(repo, new Barrier(N)) as never);
      expect(reasons(await race(N, () => service.incrementOnce(c.id)))).to.deep.equal([]);
      expect((await repo.findOneByOrFail({ id: c.id })).value, `${N - 1} of ${N} increments lost`).to.equal(1);
    });

    it('@Versioned + @RetryOnConflict: exact', async () => {
      const repo = ds.getRepository(Counter);
      const c = await repo.save(repo.create({ value: 0 }));
      // each attempt is a transaction holding a server connection: the first POOL attempts all read
      // before anyone writes (before that nothing conflicts, so these are first attempts; once open,
      // the barrier lets every later read through)
      const service = new CounterService(readingAt(repo, new Barrier(POOL)) as never);
      expect(reasons(await race(N, () => service.increment(c.id)))).to.deep.equal([]);
      expect((await repo.findOneByOrFail({ id: c.id })).value).to.equal(N);
      expect(service.calls, 'the stale first attempts were refused and retried').to.be.at.least(N + POOL - 1);
      const stale = await rejection(
        transaction(async () => {
          const a = await repo.findOneByOrFail({ id: c.id });
          await repo.save(Object.assign(await repo.findOneByOrFail({ id: c.id }), { value: 0 })); // a concurrent change (update() would be refused)
          a.value = 99;
          await repo.save(a);
        }),
      );
      expect(stale).to.be.instanceOf(StaleEntityError);
    });

    it('control: find-then-insert of one new email fails under the race', async () => {
      const repo = ds.getRepository(Account);
      const email = `ctl-${Date.now()}@x`;
      // every caller has looked (autocommit reads: no connection held while waiting) before the first inserts
      const allLooked = new Barrier(N);
      const failures = reasons(
        await race(N, async () => {
          const found = await allLooked.wait(repo.findOneBy({ email }));
          return found ?? repo.insert({ email });
        }),
      );
      expect(failures, 'duplicate inserts refused by the unique key: every caller but one').to.have.length(N - 1);
      for (const e of failures) expect(String(e?.message)).to.match(/duplicate key value violates unique constraint/);
      expect(await repo.countBy({ email })).to.equal(1);
    });

    it('createOrFind: every caller gets the one row', async () => {
      const repo = ds.getRepository(Account);
      const email = `cof-${Date.now()}@x`;
      const results = await race(N, () => createOrFind(repo, { email }, { name: 'raced' }));
      expect(reasons(results)).to.deep.equal([]);
      const ids = new Set(results.map((r) => (r as PromiseFulfilledResult<Account>).value.id));
      expect(ids.size).to.equal(1);
      expect(await repo.countBy({ email })).to.equal(1);
    });

    it('Redlock with database fencing: exact, tokens increase in the order the holders ran; also with { transaction: true }', async function () {
      const client = await sharedRedisClient(this);
      try {
        await createFencingTable(ds);
        const redlock = new Redlock([client], { namespace: NS, fencing: { dataSource: ds } });
        const order: bigint[] = [];
        const overlap = new Overlap();
        const key = `debit-${Date.now()}`;
        const { failures, credits } = await debitRace((body) =>
          redlock.using(
            key,
            5_000,
            async (lease) => {
              order.push(lease.fencingToken);
              await overlap.run(body);
            },
            { retryCount: 400, retryDelayMs: 20 },
          ),
        );
        expect(failures).to.deep.equal([]);
        expect(overlap.max).to.equal(1);
        expect(credits).to.equal(1000 - N * 10);
        expect(order).to.have.length(N);
        for (let i = 1; i < order.length; i++) expect(order[i] > order[i - 1], `token ${i}`).to.equal(true);
        // the same with the body in a transaction tied to the lease (joined by the body's transaction())
        const tied = await debitRace((body) => redlock.using(`${key}-tx`, 5_000, () => body(), { transaction: true, retryCount: 400, retryDelayMs: 20 }));
        expect(tied.failures).to.deep.equal([]);
        expect(tied.credits).to.equal(1000 - N * 10);
      } finally {
        client.disconnect();
      }
    });
  });

  describe('MikroORM through the same PgBouncer', () => {
    let orm: MikroORM;
    let mikro: MikroOrmLockingHandle;

    before(async () => {
      const init = (clientUrl: string) =>
        MikroORM.init({
          driver: PostgreSqlDriver as never,
          clientUrl,
          dbName,
          entities: [MkTally, MkAccount],
          pool: { min: 0, max: N },
          allowGlobalContext: false,
          debug: false,
        } as Options);
      // the schema, made directly on the server: MikroORM's schema generator sends a plain
      // `set names 'utf8'`, which through the pooler would stay on a server connection
      const schema = await init(base.url);
      await schema.schema.refreshDatabase();
      await schema.close(true);
      orm = await init(bouncer!.url(dbName));
      mikro = await installMikro(orm, { namespace: NS });
    });

    after(async () => {
      mikro?.uninstall();
      await orm?.close(true);
    });

    it("installLocking(orm) sees PgBouncer too: pooler 'transaction', session scope refused", async () => {
      expect(mikro.installation.settings).to.include({ pooler: 'transaction', poolerDetected: true });
      const err = await rejection(withAdvisoryLock('mk', () => undefined, { scope: 'session', dataSource: orm }));
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(SESSION_REFUSED);
    });

    /** `allRead`: the control's only (see debitRace). */
    async function tallyRace(lock: (body: () => Promise<void>) => Promise<unknown>, allRead?: Barrier) {
      const em = orm.em.fork();
      const tally = em.create(MkTally, { name: 'master', value: 0 });
      await em.flush();
      const failures = reasons(
        await race(N, () =>
          lock(() =>
            transaction(
              async () => {
                const tx = currentManager(orm);
                const reading = tx.getConnection().execute('SELECT value FROM mk_topo_tallies WHERE id = ?', [tally.id], 'all', tx.getTransactionContext());
                const [row] = await (allRead ? allRead.wait(reading) : reading);
                await sleep(15);
                await tx
                  .getConnection()
                  .execute('UPDATE mk_topo_tallies SET value = ? WHERE id = ?', [row.value + 1, tally.id], 'run', tx.getTransactionContext());
              },
              { dataSource: orm },
            ),
          ),
        ),
      );
      const [row] = await orm.em.getConnection().execute('SELECT value FROM mk_topo_tallies WHERE id = ?', [tally.id]);
      return { failures, value: Number(row.value) };
    }

    it('control: increments without a lock lose updates', async () => {
      // the first POOL increments (each waits inside its transaction, holding a server connection) all read 0
      const { failures, value } = await tallyRace((body) => body(), new Barrier(POOL));
      expect(failures).to.deep.equal([]);
      console.log(`      control: ${value} of ${N}`);
      expect(value, `at least ${POOL - 1} of ${N} increments lost`).to.be.at.most(N - (POOL - 1));
    });

    it('transaction-scope withAdvisoryLock: exact', async () => {
      const { failures, value } = await tallyRace((body) => withAdvisoryLock('tally', body, { dataSource: orm, timeoutMs: 20_000 }));
      expect(failures).to.deep.equal([]);
      expect(value).to.equal(N);
    });

    it('withLock(entity): exact', async () => {
      const em = orm.em.fork();
      const tally = em.create(MkTally, { name: 'master', value: 0 });
      await em.flush();
      const failures = reasons(
        await race(N, () =>
          withLock(orm.em.fork().getReference(MkTally, tally.id), async (locked) => {
            await sleep(15);
            locked.value += 1;
          }),
        ),
      );
      expect(failures).to.deep.equal([]);
      expect((await orm.em.fork().findOneOrFail(MkTally, tally.id)).value).to.equal(N);
    });

    it('createOrFind: every caller gets the one row', async () => {
      const email = `mk-cof-${Date.now()}@x`;
      const results = await race(N, () => createOrFind(orm.em.fork().getRepository(MkAccount), { email }));
      expect(reasons(results)).to.deep.equal([]);
      expect(new Set(results.map((r) => (r as PromiseFulfilledResult<MkAccount>).value.id)).size).to.equal(1);
    });
  });

  describeServerCheck(() => ({ bouncer: bouncer!, direct, dbName }), POOL);
});

describe("installLocking's pooler option on direct connections", () => {
  it('OrmlockModule passes pooler through to each installation (module-wide, per DataSource, per MikroORM)', () => {
    const targets = installTargets({ pooler: 'transaction', dataSources: ['default', { name: 'direct', pooler: 'none' }], mikroOrm: { pooler: 'session' } });
    expect(targets.map((t) => t.options.pooler)).to.deep.equal(['transaction', 'none', 'session']);
  });

  for (const name of BACKENDS) {
    describe(`[typeorm, ${name}]`, () => {
      let ds: DataSource | undefined;
      before(async function () {
        const options = await dataSourceOptions(name, [BillUser, BillOrder], { poolSize: 4 });
        if (!options) return this.skip();
        ds = await new DataSource(options).initialize();
      });
      after(async () => {
        if (ds?.isInitialized) await ds.destroy();
      });

      it("detects no pooler on a direct connection: 'none'", async () => {
        const h = await installLocking(ds!);
        try {
          expect(h.installation.settings).to.include({ pooler: 'none', poolerDetected: false });
        } finally {
          h.uninstall();
        }
      });

      it("pooler: 'transaction' refuses what holds a session lock; row locks still work", async () => {
        const h = await installLocking(ds!, { pooler: 'transaction', namespace: NS });
        try {
          const session = await rejection(withAdvisoryLock('k', () => undefined, { scope: 'session' }));
          expect(session).to.be.instanceOf(LockConfigError);
          expect(session.message).to.match(SESSION_REFUSED);
          const tx = await rejection(withAdvisoryLock('k', () => 'ran'));
          if (h.dialect.capabilities.transactionAdvisoryLocks) expect(tx).to.equal(null);
          else {
            // MySQL/MariaDB have no transaction-scoped advisory locks: theirs are session locks released after COMMIT
            expect(tx).to.be.instanceOf(LockConfigError);
            expect(tx.message).to.match(/advisory locks on mariadb \(session locks, released after COMMIT\) cannot work behind a transaction-pooling/);
          }
          const users = ds!.getRepository(BillUser);
          const user = await users.save(users.create({ credits: 5 }));
          await withLock(user, async (locked) => {
            locked.credits = 6;
            await users.save(locked);
          });
          expect((await users.findOneByOrFail({ id: user.id })).credits).to.equal(6);
        } finally {
          h.uninstall();
        }
      });

      it("pooler: 'session' and 'none' keep session scope; a bad value is a LockConfigError", async () => {
        for (const pooler of ['session', 'none'] as const) {
          const h = await installLocking(ds!, { pooler, namespace: NS });
          try {
            expect(await withAdvisoryLock('k', () => 'ran', { scope: 'session' })).to.equal('ran');
          } finally {
            h.uninstall();
          }
        }
        const err = await rejection(installLocking(ds!, { pooler: 'statement' as never }));
        expect(err).to.be.instanceOf(LockConfigError);
        expect(err.message).to.equal("installLocking: pooler must be one of 'transaction', 'session', 'none' (got a string ('statement'))");
      });
    });
  }
});
