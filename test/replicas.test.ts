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
  currentManager,
  installLocking,
  lock,
  transaction,
  withAdvisoryLock,
  withLock,
  type LockingHandle,
} from '../src';
import { installLocking as installMikro, type MikroOrmLockingHandle } from '../src/orm/mikro-orm';
import { race } from '../src/testing';
import { BillUser } from './fixtures/billing';
import { Counter } from './fixtures/counter';
import { MkAccount } from './fixtures/mikro-counters';
import { Account } from './fixtures/optimistic-models';
import { MkTally } from './fixtures/topology';
import { dataSourceOptions } from './support/backends';
import { pgClusterUnavailable, startPgCluster, type PgCluster } from './support/pg-cluster';
import { unavailableServer } from './support/postgres-user';
import { sharedRedisClient } from './support/redis-servers';

/**
 * Read replicas: TypeORM `replication: { master, slaves }` and MikroORM `replicas`, the replica
 * being a second PostgreSQL cluster started by test/support/pg-cluster.ts (not streaming
 * replication: the same schema with other rows, so a read that went there is visible). Every
 * lock, locked read, re-read after a conflict, version check and fencing statement must land on
 * the master; `inet_server_port()` and the marker rows ('master' / 'replica') say where each went.
 */

const ENTITIES = [BillUser, Counter, Account];
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
    cluster = await startPgCluster();
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
      const base = { driver: PostgreSqlDriver as never, entities: [MkTally, MkAccount], allowGlobalContext: false, debug: false };
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
  });
});
