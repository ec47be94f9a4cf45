import { expect } from 'chai';
import { MikroORM, type Options } from '@mikro-orm/core';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import { DataSource, type DataSourceOptions } from 'typeorm';
import {
  Pessimistic,
  Redlock,
  StaleEntityError,
  advisoryLockExists,
  advisoryLockId,
  createFencingTable,
  createOrFind,
  createScheduledLockTable,
  currentManager,
  installLocking,
  lock,
  transaction,
  withAdvisoryLock,
  withLock,
  withScheduledLock,
  withSemaphore,
  type LockingHandle,
} from '../src';
import { installLocking as installMikro, type MikroOrmLockingHandle } from '../src/orm/mikro-orm';
import { race } from '../src/testing';
import { AdvisoryDoc } from './fixtures/advisory-entities';
import { BillUser } from './fixtures/billing';
import { Counter, CounterService } from './fixtures/counter';
import { MkAccount, MkCounter } from './fixtures/mikro-counters';
import { NsPage, NsSite } from './fixtures/nested-set';
import { LockedNs } from './fixtures/trees';
import { Account } from './fixtures/optimistic-models';
import { MkTally } from './fixtures/topology';
import { dataSourceOptions } from './support/backends';
import { pgClusterUnavailable, startPgCluster, type PgCluster } from './support/pg-cluster';
import { startOrSkip, unavailableServer } from './support/postgres-user';
import { sharedRedisClient } from './support/redis-servers';

/**
 * Read replicas: TypeORM `replication: { master, slaves }` and MikroORM `replicas`, the replica
 * being a second PostgreSQL cluster started by test/support/pg-cluster.ts (not streaming
 * replication: the same schema with other rows, so a read that went there is visible). Every
 * lock, locked read, re-read after a conflict, version check and fencing statement must land on
 * the master; `inet_server_port()` and the marker rows ('master' / 'replica') say where each went.
 */

const ENTITIES = [BillUser, Counter, Account, AdvisoryDoc, NsSite, NsPage, LockedNs];
/** The scheduled-lock table's DDL (what createScheduledLockTable runs), for the replica. */
const SCHEDULED_DDL =
  'CREATE TABLE IF NOT EXISTS "ormlock_scheduled_locks" (name varchar(191) PRIMARY KEY, locked_until timestamptz NOT NULL, ' +
  'locked_at timestamptz NOT NULL, locked_by varchar(255) NOT NULL, runs bigint NOT NULL)';
const NS = `rep-${process.env.ORMLOCK_TEST_DB}`;
const rejection = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e) => e,
  );

describe('production set-ups: a master and a read replica (a second PostgreSQL cluster)', function () {
  this.timeout(60_000);
  let cluster: PgCluster | undefined;
  let masterUrl: string;
  let masterPort: number;
  let replica: Client;
  let master: Client;

  before(async function () {
    const why = pgClusterUnavailable();
    if (why) unavailableServer(this, 'the replica tests', why);
    const options = await dataSourceOptions('postgres', ENTITIES);
    if (!options) return this.skip();
    masterUrl = (options as { url: string }).url;
    cluster = await startOrSkip(this, 'the replica tests', () => startPgCluster());
    // the same schema on both servers
    await new DataSource(options).initialize().then((d) => d.destroy());
    await new DataSource({ ...options, url: cluster.url() } as DataSourceOptions).initialize().then((d) => d.destroy());
    master = new Client({ connectionString: masterUrl });
    replica = new Client({ connectionString: cluster.url() });
    await master.connect();
    await replica.connect();
    masterPort = Number((await master.query('SELECT inet_server_port() AS port')).rows[0].port);
    expect(masterPort).to.not.equal(cluster.port);
  });

  after(async () => {
    await master?.end().catch(() => undefined);
    await replica?.end().catch(() => undefined);
    await cluster?.stop();
  });

  /** The advisory locks the master's backend `pid` holds (0 when that backend is not the master's). */
  async function advisoryOnMaster(pid: number): Promise<number> {
    const { rows } = await master.query(`SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'`, [pid]);
    return rows[0].n;
  }

  /** The server port and backend pid of the connection a query on `manager` runs on. */
  async function whereRuns(manager: { query(sql: string): Promise<any> }): Promise<{ port: number; pid: number }> {
    const [row] = await manager.query('SELECT inet_server_port() AS port, pg_backend_pid() AS pid');
    return { port: Number(row.port), pid: Number(row.pid) };
  }

  /** The same row (same id) on both servers, its name saying which server it is on. */
  async function markedUser(id: number): Promise<void> {
    await master.query(`INSERT INTO bill_users (id, name, credits) VALUES ($1, 'master', 100)`, [id]);
    await replica.query(`INSERT INTO bill_users (id, name, credits) VALUES ($1, 'replica', 100)`, [id]);
  }

  describe('[typeorm, postgres]', () => {
    let ds: DataSource;
    let handle: LockingHandle;

    before(async () => {
      ds = await new DataSource({
        type: 'postgres',
        replication: { master: { url: masterUrl }, slaves: [{ url: cluster!.url() }] },
        entities: ENTITIES,
        poolSize: 12,
      } as DataSourceOptions).initialize();
      handle = await installLocking(ds, { namespace: NS });
    });

    after(async () => {
      handle?.uninstall();
      if (ds?.isInitialized) await ds.destroy();
    });

    it('control: a plain read outside a transaction goes to the replica', async () => {
      await markedUser(101);
      expect((await ds.getRepository(BillUser).findOneByOrFail({ id: 101 })).name).to.equal('replica');
    });

    it('createOrFind: a key only on the master is found there (no UniqueViolationError)', async () => {
      await master.query(`INSERT INTO opt_accounts (email, name) VALUES ('only-master@x', 'master')`);
      const found = await createOrFind(ds.getRepository(Account), { email: 'only-master@x' });
      expect(found.name).to.equal('master');
    });

    it("createOrFind: the master's row wins over a different row on the replica", async () => {
      await master.query(`INSERT INTO opt_accounts (email, name) VALUES ('both@x', 'master')`);
      await replica.query(`INSERT INTO opt_accounts (email, name) VALUES ('both@x', 'replica')`);
      expect((await createOrFind(ds.getRepository(Account), { email: 'both@x' })).name).to.equal('master');
    });

    it('createOrFind: 10 racing callers on a new key all get the one row', async () => {
      const results = await race(10, () => createOrFind(ds.getRepository(Account), { email: 'raced@x' }, { name: 'master' }));
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).to.deep.equal([]);
      expect(new Set(results.map((r) => (r as PromiseFulfilledResult<Account>).value.id)).size).to.equal(1);
    });

    it("withLock and lock(): the locked re-read is the master's row, the body's statements run on the master", async () => {
      await markedUser(102);
      const user = ds.getRepository(BillUser).create({ id: 102 });
      const seen = await withLock(user, async (locked) => {
        const [{ port }] = await currentManager().query('SELECT inet_server_port() AS port');
        return { name: locked.name, port: Number(port) };
      });
      expect(seen).to.deep.equal({ name: 'master', port: masterPort });
      const again = ds.getRepository(BillUser).create({ id: 102 });
      await transaction(() => lock(again));
      expect(again.name).to.equal('master');
    });

    it('@Pessimistic: locked reads go to the master', async () => {
      await markedUser(103);
      const users = ds.getRepository(BillUser);
      class Reader {
        @Pessimistic()
        async read(id: number): Promise<string> {
          return (await users.findOneByOrFail({ id })).name;
        }
      }
      expect(await new Reader().read(103)).to.equal('master');
    });

    it("advisory locks: taken and checked on the master (a key held there is seen; the body's server is the master)", async () => {
      const port = await withAdvisoryLock('rep-key', async (ctx) => Number((await ctx.manager.query('SELECT inet_server_port() AS port'))[0].port));
      expect(port).to.equal(masterPort);
      const [id] = advisoryLockId('held-on-master');
      await master.query('SELECT pg_advisory_lock($1::bigint)', [id]);
      try {
        expect(await advisoryLockExists('held-on-master')).to.equal(true);
      } finally {
        await master.query('SELECT pg_advisory_unlock($1::bigint)', [id]);
      }
    });

    it("@Versioned: the version check (and the StaleEntityError's current version) is the master's", async () => {
      const repo = ds.getRepository(Counter);
      const c = await repo.save(repo.create({ value: 0 }));
      await replica.query('INSERT INTO opt_counters (id, name, value, version) VALUES ($1, $2, 0, 77)', [c.id, 'replica']);
      await master.query('UPDATE opt_counters SET version = version + 1 WHERE id = $1', [c.id]);
      c.value = 5;
      const err = await rejection(repo.save(c));
      expect(err).to.be.instanceOf(StaleEntityError);
      expect(Number(err.actualVersion)).to.equal(c.version + 1);
    });

    it("@RetryOnConflict + @Versioned: every attempt re-reads the master's row (10 racing increments are exact; the replica's copy is untouched)", async () => {
      const repo = ds.getRepository(Counter);
      const c = await repo.save(repo.create({ name: 'master', value: 0 }));
      await replica.query(`INSERT INTO opt_counters (id, name, value, version) VALUES ($1, 'replica', 50, 77)`, [c.id]);
      const service = new CounterService(repo as never);
      const results = await race(10, () => service.increment(c.id));
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).to.deep.equal([]);
      expect((await master.query('SELECT value FROM opt_counters WHERE id = $1', [c.id])).rows[0].value).to.equal(10);
      expect((await replica.query('SELECT value, version FROM opt_counters WHERE id = $1', [c.id])).rows[0]).to.deep.equal({ value: 50, version: 77 });
    });

    it("entity-class @AdvisoryLock: the write's lock is held on the master, by the write's connection, until COMMIT", async () => {
      const docs = ds.getRepository(AdvisoryDoc);
      const seen = await transaction(async () => {
        await docs.save(docs.create({ slot: 7 }));
        const at = await whereRuns(currentManager());
        return { port: at.port, held: await advisoryOnMaster(at.pid), exists: await advisoryLockExists(['doc', 7]) };
      });
      expect(seen).to.deep.equal({ port: masterPort, held: 1, exists: true });
      expect(await advisoryLockExists(['doc', 7])).to.equal(false);
      expect((await master.query('SELECT count(*)::int AS n FROM adv_docs WHERE slot = 7')).rows[0].n).to.equal(1);
      expect((await replica.query('SELECT count(*)::int AS n FROM adv_docs')).rows[0].n).to.equal(0);
    });

    it("@AroundCreate(lockParent('site')): the parent's locked re-read is the master's (a site only there), for save() and for insert() outside a transaction", async () => {
      const {
        rows: [site],
      } = await master.query(`INSERT INTO ns_sites (name) VALUES ('master') RETURNING id`);
      // control: a plain read outside a transaction does not find it (the replica has no such site)
      expect(await ds.getRepository(NsSite).findOneBy({ id: site.id })).to.equal(null);
      const pages = ds.getRepository(NsPage);
      await pages.save(pages.create({ title: 'saved', siteId: site.id }));
      await pages.insert({ title: 'inserted', siteId: site.id });
      const port = await transaction(async () => {
        await pages.save(pages.create({ title: 'in-tx', siteId: site.id }));
        return (await whereRuns(currentManager())).port;
      });
      expect(port).to.equal(masterPort);
      expect((await master.query('SELECT title FROM ns_pages WHERE "siteId" = $1 ORDER BY id', [site.id])).rows.map((r) => r.title)).to.deep.equal([
        'saved',
        'inserted',
        'in-tx',
      ]);
    });

    it("@LockedTree: the tree lock is held on the master, the nested set's reads and writes are the master's (the replica's table stays empty)", async () => {
      const repo = ds.getRepository(LockedNs);
      const root = await repo.save(repo.create({ name: 'root', parent: null }));
      const results = await race(6, (i) => repo.save(repo.create({ name: `n${i}`, parent: root })));
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).to.deep.equal([]);
      const seen = await transaction(async () => {
        await repo.save(repo.create({ name: 'in-tx', parent: root }));
        const at = await whereRuns(currentManager());
        return { port: at.port, held: (await advisoryOnMaster(at.pid)) > 0 };
      });
      expect(seen).to.deep.equal({ port: masterPort, held: true });
      const { rows } = await master.query('SELECT "nsleft" AS l, "nsright" AS r FROM lt_ns ORDER BY "nsleft"');
      expect(rows).to.have.length(8);
      expect(rows[0]).to.deep.equal({ l: 1, r: 16 });
      expect(new Set(rows.flatMap((x) => [x.l, x.r])).size).to.equal(16);
      expect((await replica.query('SELECT count(*)::int AS n FROM lt_ns')).rows[0].n).to.equal(0);
    });

    it("database semaphore: slots held on the master, tokens drawn there (the token sequence exists only there), in its own transaction and in the caller's", async () => {
      await createFencingTable(ds);
      expect((await replica.query(`SELECT count(*)::int AS n FROM pg_class WHERE relname = 'ormlock_fencing_seq'`)).rows[0].n).to.equal(0);
      const inside = async () => {
        const at = await whereRuns(currentManager());
        return { port: at.port, held: (await advisoryOnMaster(at.pid)) > 0 };
      };
      const name = `rep-sem-${process.pid}`;
      expect(await withSemaphore(name, 2, inside)).to.deep.equal({ port: masterPort, held: true });
      expect(await transaction(() => withSemaphore(name, 2, inside))).to.deep.equal({ port: masterPort, held: true });
      const results = await race(6, () => withSemaphore(name, 2, (permit) => permit.token, { timeoutMs: 20_000 }));
      expect(new Set(results.map((r) => (r as PromiseFulfilledResult<bigint>).value)).size).to.equal(6);
    });

    it('database scheduled lock: the lock row is taken and released on the master; a second instance sees it held there', async () => {
      await createScheduledLockTable(ds);
      await replica.query(SCHEDULED_DDL);
      const name = `rep-job-${process.pid}`;
      const run = await withScheduledLock(name, { lockAtMostFor: 10_000, lockAtLeastFor: 5_000 }, async () => {
        // while it runs, another instance skips: the acquisition checked the master's row
        expect(await withScheduledLock(name, { lockAtMostFor: 10_000 }, () => 'twice')).to.deep.equal({ ran: false });
        return (await whereRuns(ds)).port;
      });
      expect(run).to.deep.equal({ ran: true, result: masterPort });
      // released with lockAtLeastFor: still held afterwards, on the master
      expect(await withScheduledLock(name, { lockAtMostFor: 10_000 }, () => 'again')).to.deep.equal({ ran: false });
      expect((await master.query('SELECT runs FROM ormlock_scheduled_locks WHERE name = $1', [name])).rows.map((r) => Number(r.runs))).to.deep.equal([1]);
      expect((await replica.query('SELECT count(*)::int AS n FROM ormlock_scheduled_locks')).rows[0].n).to.equal(0);
    });

    it('Redlock fencing tokens come from the master', async function () {
      const client = await sharedRedisClient(this);
      try {
        await createFencingTable(ds);
        await new DataSource({ type: 'postgres', url: cluster!.url() }).initialize().then(async (r) => {
          await r.query('CREATE TABLE IF NOT EXISTS ormlock_fencing (lock_key text PRIMARY KEY, token bigint NOT NULL)');
          await r.destroy();
        });
        const key = `fence-${Date.now()}`;
        const redlock = new Redlock([client], { namespace: NS, fencing: { dataSource: ds } });
        const lease = await redlock.acquire(key, 2000);
        await lease.release();
        const onMaster = await master.query('SELECT token FROM ormlock_fencing WHERE lock_key LIKE $1', [`%${key}`]);
        const onReplica = await replica.query('SELECT token FROM ormlock_fencing WHERE lock_key LIKE $1', [`%${key}`]);
        expect(onMaster.rows.map((r) => String(r.token))).to.deep.equal([String(lease.fencingToken)]);
        expect(onReplica.rows).to.deep.equal([]);
      } finally {
        client.disconnect();
      }
    });
  });

  describe('[mikro-orm, postgres]', () => {
    let orm: MikroORM;
    let handle: MikroOrmLockingHandle;

    before(async () => {
      const dbName = new URL(masterUrl).pathname.slice(1);
      const base = { driver: PostgreSqlDriver as never, entities: [MkTally, MkAccount, MkCounter], allowGlobalContext: false, debug: false };
      // the same tables on the replica
      const onReplica = await MikroORM.init({ ...base, clientUrl: cluster!.url(), dbName: 'postgres' } as Options);
      await onReplica.schema.refreshDatabase();
      await onReplica.close(true);
      orm = await MikroORM.init({
        ...base,
        clientUrl: masterUrl,
        dbName,
        pool: { min: 0, max: 12 },
        replicas: [{ host: '127.0.0.1', port: cluster!.port, user: 'postgres', dbName: 'postgres' }],
      } as Options);
      await orm.schema.refreshDatabase();
      handle = await installMikro(orm, { namespace: NS });
    });

    after(async () => {
      handle?.uninstall();
      await orm?.close(true);
    });

    async function markedTally(id: number): Promise<void> {
      await master.query(`INSERT INTO mk_topo_tallies (id, name, value) VALUES ($1, 'master', 0)`, [id]);
      await replica.query(`INSERT INTO mk_topo_tallies (id, name, value) VALUES ($1, 'replica', 0)`, [id]);
    }

    it('control: a plain read outside a transaction goes to the replica', async () => {
      await markedTally(201);
      expect((await orm.em.fork().findOneOrFail(MkTally, 201)).name).to.equal('replica');
    });

    it("createOrFind: a key only on the master is found there; the master's row wins over the replica's", async () => {
      await master.query(`INSERT INTO mk_accounts (email, name) VALUES ('mk-only-master@x', 'master'), ('mk-both@x', 'master')`);
      await replica.query(`INSERT INTO mk_accounts (email, name) VALUES ('mk-both@x', 'replica')`);
      expect((await createOrFind(orm.em.fork().getRepository(MkAccount), { email: 'mk-only-master@x' })).name).to.equal('master');
      expect((await createOrFind(orm.em.fork().getRepository(MkAccount), { email: 'mk-both@x' })).name).to.equal('master');
    });

    it('createOrFind: 10 racing callers on a new key all get the one row', async () => {
      const results = await race(10, () => createOrFind(orm.em.fork().getRepository(MkAccount), { email: 'mk-raced@x' }, { name: 'master' }));
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).to.deep.equal([]);
      expect(new Set(results.map((r) => (r as PromiseFulfilledResult<MkAccount>).value.id)).size).to.equal(1);
    });

    it("withLock: the locked re-read is the master's row; advisory bodies run on the master", async () => {
      await markedTally(202);
      const em = orm.em.fork();
      const tally = em.getReference(MkTally, 202);
      const name = await withLock(tally, (locked) => locked.name);
      expect(name).to.equal('master');
      const port = await withAdvisoryLock(
        'mk-rep',
        async () => {
          const [row] = await (currentManager(orm) as any).execute('SELECT inet_server_port() AS port');
          return Number(row.port);
        },
        { dataSource: orm },
      );
      expect(port).to.equal(masterPort);
    });

    it("@Versioned: the version check is the master's (a stale row there is refused though the replica's version matches; a stale replica does not refuse a write)", async () => {
      const em = orm.em.fork();
      const c = em.create(MkCounter, { name: 'master' });
      await em.flush();
      const loaded = c.version;
      // the replica has the version the entity was loaded with; the master has moved on
      await replica.query(`INSERT INTO mk_counters (id, name, value, version) VALUES ($1, 'replica', 0, $2)`, [c.id, loaded]);
      await master.query('UPDATE mk_counters SET version = version + 1 WHERE id = $1', [c.id]);
      c.value = 5;
      const err = await rejection(em.flush());
      expect(err).to.be.instanceOf(StaleEntityError);
      // and the other way round: the master unchanged since the load, the replica far ahead
      const em2 = orm.em.fork();
      const d = em2.create(MkCounter, { name: 'master' });
      await em2.flush();
      await replica.query(`INSERT INTO mk_counters (id, name, value, version) VALUES ($1, 'replica', 0, 77)`, [d.id]);
      d.value = 6;
      await em2.flush();
      expect((await master.query('SELECT value FROM mk_counters WHERE id = $1', [d.id])).rows[0].value).to.equal(6);
    });

    it('@Pessimistic: locked reads go to the master', async () => {
      await markedTally(203);
      const mikro = orm;
      class Reader {
        @Pessimistic()
        async read(id: number): Promise<string> {
          return (await mikro.em.findOneOrFail(MkTally, id)).name;
        }
      }
      expect(await new Reader().read(203)).to.equal('master');
    });

    it('Redlock fencing tokens come from the master', async function () {
      const client = await sharedRedisClient(this);
      try {
        for (const server of [master, replica])
          await server.query('CREATE TABLE IF NOT EXISTS ormlock_fencing (lock_key text PRIMARY KEY, token bigint NOT NULL)');
        const key = `mk-fence-${process.pid}-${Date.now()}`;
        const redlock = new Redlock([client], { namespace: NS, fencing: { dataSource: orm } });
        const lease = await redlock.acquire(key, 2000);
        await lease.release();
        const onMaster = await master.query('SELECT token FROM ormlock_fencing WHERE lock_key LIKE $1', [`%${key}`]);
        const onReplica = await replica.query('SELECT token FROM ormlock_fencing WHERE lock_key LIKE $1', [`%${key}`]);
        expect(onMaster.rows.map((r) => String(r.token))).to.deep.equal([String(lease.fencingToken)]);
        expect(onReplica.rows).to.deep.equal([]);
      } finally {
        client.disconnect();
      }
    });

    it('advisory locks: a key held on the master is seen; the semaphore and the scheduled lock run on the master', async () => {
      const [id] = advisoryLockId('mk-held-on-master');
      await master.query('SELECT pg_advisory_lock($1::bigint)', [id]);
      try {
        expect(await advisoryLockExists('mk-held-on-master', { dataSource: orm })).to.equal(true);
      } finally {
        await master.query('SELECT pg_advisory_unlock($1::bigint)', [id]);
      }
      // the token sequence only on the master
      await master.query('CREATE SEQUENCE IF NOT EXISTS "ormlock_fencing_seq"');
      const inside = async () => {
        const [row] = await (currentManager(orm) as any).execute('SELECT inet_server_port() AS port, pg_backend_pid() AS pid');
        return { port: Number(row.port), held: (await advisoryOnMaster(Number(row.pid))) > 0 };
      };
      expect(await withSemaphore(`mk-rep-sem-${process.pid}`, 2, inside, { dataSource: orm })).to.deep.equal({ port: masterPort, held: true });
      await createScheduledLockTable(orm);
      await replica.query(SCHEDULED_DDL);
      const name = `mk-rep-job-${process.pid}`;
      expect(await withScheduledLock(name, { lockAtMostFor: 10_000, lockAtLeastFor: 5_000, dataSource: orm }, () => 'ran')).to.deep.equal({
        ran: true,
        result: 'ran',
      });
      expect(await withScheduledLock(name, { lockAtMostFor: 10_000, dataSource: orm }, () => 'again')).to.deep.equal({ ran: false });
      expect((await master.query('SELECT count(*)::int AS n FROM ormlock_scheduled_locks WHERE name = $1', [name])).rows[0].n).to.equal(1);
      expect((await replica.query('SELECT count(*)::int AS n FROM ormlock_scheduled_locks WHERE name = $1', [name])).rows[0].n).to.equal(0);
    });
  });
});
