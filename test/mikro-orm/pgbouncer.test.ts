import { expect } from 'chai';
import { MikroORM, type EntityManager, type Options } from '@mikro-orm/core';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import {
  LockConfigError,
  RetryOnConflict,
  StaleEntityError,
  createScheduledLockTable,
  transaction,
  withPessimistic,
  withScheduledLock,
  withSemaphore,
} from '../../src';
import { installLocking, type MikroOrmLockingHandle } from '../../src/orm/mikro-orm';
import { Barrier, race } from '../../src/testing';
import { MikroBilling, MkOrder, MkUser } from '../fixtures/mikro-billing';
import { MkCounter, MkPlainCounter } from '../fixtures/mikro-counters';
import { Overlap } from '../fixtures/two-sources';
import { dataSourceOptions } from '../support/backends';
import { describeServerCheck, pgBouncerUnavailable, startPgBouncer, type PgBouncer } from '../support/pgbouncer';
import { startOrSkip, unavailableServer } from '../support/postgres-user';
import { reasons, rejection } from '../support/rejection';
import { sleep } from '../support/suite';

/**
 * Production set-ups, MikroORM 6 through a real PgBouncer in transaction mode: the strategies
 * test/pgbouncer.test.ts does not race on MikroORM — @Pessimistic and withPessimistic, @Versioned
 * with @RetryOnConflict, the database semaphore (transaction scope, both of its paths; session
 * scope refused) and the database scheduled lock — each under 20 racing callers started on one
 * barrier (src/testing's race), each with a control without the declaration that shows the
 * anomaly. At the end, no advisory lock and no changed setting is left on any of this PgBouncer's
 * server connections, checked on the server itself (test/support/pgbouncer.ts).
 */

const N = 20;
/** Server connections per pool: fewer than the racing callers, so transactions share them. */
const POOL = 6;
const NS = `pgbm-${process.env.ORMLOCK_TEST_DB}`;
const SESSION_REFUSED = /session-scope advisory locks cannot work behind a transaction-pooling connection pooler/;

describe('production set-ups: MikroORM through PgBouncer in transaction mode [mikro-orm, postgres]', function () {
  this.timeout(120_000);
  let bouncer: PgBouncer | undefined;
  let baseUrl: string;
  let dbName: string;
  let orm: MikroORM;
  let handle: MikroOrmLockingHandle;
  let direct: Client;

  before(async function () {
    const why = pgBouncerUnavailable();
    if (why) unavailableServer(this, 'the MikroORM PgBouncer tests', why);
    const options = (await dataSourceOptions('postgres', [], { fresh: false })) as { url: string } | null;
    if (!options) return this.skip();
    baseUrl = options.url;
    dbName = new URL(baseUrl).pathname.slice(1);
    // a second pool of the same database, for the server check's control
    bouncer = await startOrSkip(this, 'the MikroORM PgBouncer tests', () =>
      startPgBouncer({ databases: { [dbName]: baseUrl, [`${dbName}_ctl`]: baseUrl }, poolSize: POOL }),
    );
    const init = (clientUrl: string) =>
      MikroORM.init({
        driver: PostgreSqlDriver as never,
        clientUrl,
        dbName,
        entities: [MkUser, MkOrder, MkCounter, MkPlainCounter],
        pool: { min: 0, max: N + 5 },
        allowGlobalContext: false,
        debug: false,
      } as Options);
    // the schema, made directly on the server: MikroORM's schema generator starts with a plain
    // `set names 'utf8'`, which through the pooler would stay on a server connection
    const schema = await init(baseUrl);
    await schema.schema.refreshDatabase();
    await schema.close(true);
    orm = await init(bouncer.url(dbName));
    handle = await installLocking(orm, { namespace: NS });
    direct = new Client({ connectionString: baseUrl });
    await direct.connect();
  });

  after(async () => {
    handle?.uninstall();
    await orm?.close(true);
    await direct?.end().catch(() => undefined);
    await bouncer?.stop();
  });

  it("installLocking(orm) sees PgBouncer: pooler 'transaction', detected", () => {
    expect(handle.installation.settings).to.include({ pooler: 'transaction', poolerDetected: true });
  });

  describe('@Pessimistic / withPessimistic', () => {
    /** A user with 1000 credits and N orders of 10. */
    async function seedUser() {
      const em = orm.em.fork();
      const user = em.create(MkUser, { credits: 1000 });
      for (let i = 0; i < N; i++) em.create(MkOrder, { user, price: 10 });
      await em.flush();
      const orders = await em.find(MkOrder, { user }, { orderBy: { id: 'asc' } });
      return { userId: user.id, orderIds: orders.map((o) => o.id) };
    }

    async function outcome(userId: number, results: PromiseSettledResult<unknown>[]) {
      const em = orm.em.fork();
      return {
        failures: reasons(results),
        credits: (await em.findOneOrFail(MkUser, userId)).credits,
        paid: await em.count(MkOrder, { user: userId, paid: true }),
      };
    }

    /**
     * MikroBilling's `orm`, whose `em.findOneOrFail(MkUser, …)` (a charge's first read) arrives at
     * `allRead`; everything else is the real global EntityManager (resolved to the transaction's).
     */
    function readingUserAt(allRead: Barrier): MikroORM {
      const em = new Proxy(orm.em, {
        get(target, key) {
          if (key === 'findOneOrFail')
            return (...args: Parameters<EntityManager['findOneOrFail']>) => {
              const reading = target.findOneOrFail(...args);
              return args[0] === MkUser ? allRead.wait(reading) : reading;
            };
          const value = Reflect.get(target, key, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      return new Proxy(orm, { get: (target, key) => (key === 'em' ? em : Reflect.get(target, key, target)) });
    }

    /** `allRead` (the control's only): the charges' reads of the user arrive there before any charge writes. */
    async function charges(method: 'chargeUnlocked' | 'chargePessimistic', allRead?: Barrier) {
      const { userId, orderIds } = await seedUser();
      const billing = new MikroBilling(allRead ? readingUserAt(allRead) : orm);
      return outcome(userId, await race(N, (i) => billing[method](userId, orderIds[i])));
    }

    it(`control: ${N} racing charges in a transaction (@Transactional) without a lock lose updates`, async () => {
      // the first POOL charges (each waits inside its transaction, on one of PgBouncer's POOL server
      // connections) all read 1000 before any writes: they all write 990, POOL - 1 debits lost at least
      // (left to overlap, a loaded machine could run the charges one after another: none lost)
      const { failures, credits, paid } = await charges('chargeUnlocked', new Barrier(POOL));
      expect(failures).to.deep.equal([]);
      expect(paid).to.equal(N);
      console.log(`      control: ${credits} credits left, ${1000 - N * 10} expected`);
      expect(credits, `lost updates without the lock: at least ${POOL - 1} of ${N}`).to.be.at.least(1000 - (N - (POOL - 1)) * 10);
    });

    it(`@Pessimistic() on a service method using the global orm.em: ${N} racing charges are exact`, async () => {
      const { failures, credits, paid } = await charges('chargePessimistic');
      expect(failures).to.deep.equal([]);
      expect(paid).to.equal(N);
      expect(credits).to.equal(1000 - N * 10);
    });

    it(`withPessimistic(fn, { dataSource: orm }) with reads through orm.em: ${N} racing charges are exact`, async () => {
      const { userId, orderIds } = await seedUser();
      const results = await race(N, (i) =>
        withPessimistic(
          async () => {
            const user = await orm.em.findOneOrFail(MkUser, userId); // … FOR UPDATE
            const order = await orm.em.findOneOrFail(MkOrder, orderIds[i]);
            await sleep(15);
            user.credits -= order.price;
            order.paid = true;
            await orm.em.flush();
          },
          { dataSource: orm, timeoutMs: 20_000 },
        ),
      );
      const { failures, credits, paid } = await outcome(userId, results);
      expect(failures).to.deep.equal([]);
      expect(paid).to.equal(N);
      expect(credits).to.equal(1000 - N * 10);
    });
  });

  describe('@Versioned + @RetryOnConflict', () => {
    /**
     * Both counters of a pair read, then written back + 1 in one flush (a batched UPDATE), retried on
     * conflict. The reads arrive at `allRead` (POOL parties: each attempt waits inside its transaction,
     * holding one of PgBouncer's server connections), so the first POOL attempts all read before anyone
     * writes. Nothing conflicts before that, so those are first attempts; once open, the barrier lets
     * every later read (retries too) through.
     */
    class Increments {
      calls = 0;
      private readonly allRead = new Barrier(POOL);
      constructor(private readonly cls: typeof MkCounter | typeof MkPlainCounter) {}

      @RetryOnConflict({ attempts: 200, backoffMs: 2, maxBackoffMs: 50 })
      async both(ids: readonly number[]): Promise<void> {
        this.calls++;
        const em = orm.em; // the retry's transaction
        const counters = await this.allRead.wait(em.find(this.cls as typeof MkCounter, { id: { $in: [...ids] } }));
        await sleep(10);
        for (const c of counters) c.value += 1;
        await em.flush();
      }
    }

    async function increments(cls: typeof MkCounter | typeof MkPlainCounter) {
      const em = orm.em.fork();
      const pair = [em.create(cls as typeof MkCounter, { name: `${cls.name}-a` }), em.create(cls as typeof MkCounter, { name: `${cls.name}-b` })];
      await em.flush();
      const ids = pair.map((c) => c.id);
      const service = new Increments(cls);
      const failures = reasons(await race(N, () => service.both(ids)));
      const values = (await orm.em.fork().find(cls as typeof MkCounter, { id: { $in: ids } }, { orderBy: { id: 'asc' } })).map((c) => c.value);
      return { failures, values, calls: service.calls };
    }

    it(`control: without @Versioned (MikroORM's own version check, batched), ${N} racing increments of two counters per flush lose updates`, async () => {
      // MikroORM checks a batch's versions with a SELECT, then UPDATEs by primary key: an increment is
      // lost when a second check passes before the first UPDATE commits. The first POOL attempts (each
      // in its transaction, on one of PgBouncer's POOL server connections) wait between the two until
      // all have checked, so they all write 1 (left to run, a loaded machine could commit each UPDATE
      // before the next check: every stale attempt caught and retried, nothing lost)
      const driver = orm.em.getDriver();
      const own = Object.getOwnPropertyDescriptor(driver, 'nativeUpdateMany');
      const update = driver.nativeUpdateMany;
      const allChecked = new Barrier(POOL);
      driver.nativeUpdateMany = ((...args: Parameters<typeof update>) => allChecked.wait().then(() => update.apply(driver, args))) as typeof update;
      let result: Awaited<ReturnType<typeof increments>>;
      try {
        result = await increments(MkPlainCounter);
      } finally {
        if (own) Object.defineProperty(driver, 'nativeUpdateMany', own);
        else delete (driver as Partial<typeof driver>).nativeUpdateMany;
      }
      const { failures, values } = result;
      expect(failures).to.deep.equal([]);
      console.log(`      control: counters at ${values.join(', ')} of ${N}`);
      expect(Math.max(...values), `lost increments without @Versioned: at least ${POOL - 1} of ${N} on each counter`).to.be.at.most(N - (POOL - 1));
    });

    it(`@Versioned: ${N} racing increments of two counters per flush are exact, the conflicts retried`, async () => {
      const { failures, values, calls } = await increments(MkCounter);
      expect(failures).to.deep.equal([]);
      expect(values).to.deep.equal([N, N]);
      console.log(`      ${calls} calls for ${N} increments`);
      expect(calls, 'the stale first attempts were refused and retried').to.be.at.least(N + POOL - 1);
    });

    it('a stale flush through PgBouncer is a StaleEntityError, nothing written', async () => {
      const em = orm.em.fork();
      const counter = em.create(MkCounter, { name: 'stale' });
      await em.flush();
      const mine = orm.em.fork();
      const loaded = await mine.findOneOrFail(MkCounter, counter.id);
      const other = orm.em.fork();
      (await other.findOneOrFail(MkCounter, counter.id)).value = 7;
      await other.flush();
      loaded.value = 99;
      expect(await rejection(mine.flush())).to.be.instanceOf(StaleEntityError);
      expect((await orm.em.fork().findOneOrFail(MkCounter, counter.id)).value).to.equal(7);
    });
  });

  describe('database semaphore (withSemaphore), 3 permits', () => {
    const PERMITS = 3;

    before(async () => {
      // what createFencingTable (TypeORM) creates; a MikroORM application creates it in a migration
      await orm.em.getConnection().execute('CREATE SEQUENCE IF NOT EXISTS "ormlock_fencing_seq"');
    });

    /** N callers each run a 40 ms body; `wrap` holds a permit around it (or not: the control). */
    async function semaphoreRace(wrap: (body: () => Promise<void>) => Promise<unknown>) {
      const overlap = new Overlap();
      let ran = 0;
      const body = () =>
        overlap.run(async () => {
          await sleep(40);
          ran++;
        });
      const failures = reasons(await race(N, () => wrap(body)));
      return { failures, ran, max: overlap.max };
    }

    it(`control: ${N} racing bodies without the semaphore run more than ${PERMITS} at once`, async () => {
      const { failures, ran, max } = await semaphoreRace((body) => body());
      expect(failures).to.deep.equal([]);
      expect(ran).to.equal(N);
      console.log(`      control: ${max} bodies inside at once`);
      expect(max).to.be.greaterThan(PERMITS);
    });

    it(`transaction scope, the transaction opened by withSemaphore (one statement per try): ${N} racing callers, never more than ${PERMITS} inside, distinct tokens`, async () => {
      const name = `mk-sem-own-${process.pid}`;
      const tokens = new Set<bigint>();
      const { failures, ran, max } = await semaphoreRace((body) =>
        withSemaphore(
          name,
          PERMITS,
          async (permit) => {
            tokens.add(permit.token);
            await body();
          },
          { timeoutMs: 30_000, dataSource: orm },
        ),
      );
      expect(failures).to.deep.equal([]);
      expect(ran).to.equal(N);
      expect(max).to.be.within(1, PERMITS);
      expect(tokens.size).to.equal(N);
    });

    it(`transaction scope inside the caller's transaction (one slot per statement): ${N} racing callers, never more than ${PERMITS} inside`, async () => {
      const name = `mk-sem-tx-${process.pid}`;
      const { failures, ran, max } = await semaphoreRace((body) =>
        transaction(() => withSemaphore(name, PERMITS, () => body(), { timeoutMs: 30_000 }), { dataSource: orm }),
      );
      expect(failures).to.deep.equal([]);
      expect(ran).to.equal(N);
      expect(max).to.be.within(1, PERMITS);
    });

    it('session scope is refused with LockConfigError; the body never runs', async () => {
      let ran = false;
      const err = await rejection(withSemaphore(`mk-sem-session-${process.pid}`, PERMITS, () => void (ran = true), { scope: 'session', dataSource: orm }));
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(SESSION_REFUSED);
      expect(ran).to.equal(false);
    });
  });

  describe('database scheduled lock (withScheduledLock)', () => {
    const TABLE = 'ormlock_scheduled_locks';

    before(async () => {
      await createScheduledLockTable(orm);
    });

    it(`control: ${N} racing instances that all read the lock row, then take it, all run the same tick`, async () => {
      const name = `mk-ctl-job-${process.pid}`;
      const connection = orm.em.getConnection();
      const allRead = new Barrier(N);
      let runs = 0;
      const failures = reasons(
        await race(N, async () => {
          // autocommit reads (no connection held while waiting): every instance has read before any takes the lock
          const [row] = await allRead.wait(connection.execute(`SELECT locked_until > statement_timestamp() AS held FROM "${TABLE}" WHERE name = ?`, [name]));
          if (row?.held) return;
          await connection.execute(
            `INSERT INTO "${TABLE}" (name, locked_until, locked_at, locked_by, runs) VALUES (?, statement_timestamp() + interval '1 minute', statement_timestamp(), 'ctl', 1)
             ON CONFLICT (name) DO UPDATE SET locked_until = EXCLUDED.locked_until, runs = "${TABLE}".runs + 1`,
            [name],
          );
          runs++;
        }),
      );
      expect(failures).to.deep.equal([]);
      console.log(`      control: ${runs} of ${N} instances ran the tick`);
      expect(runs, 'every instance found the lock free').to.equal(N);
      const [row] = await connection.execute(`SELECT runs FROM "${TABLE}" WHERE name = ?`, [name]);
      expect(Number(row.runs)).to.equal(N);
    });

    it(`${N} racing instances of one job: exactly one runs the tick; once lockAtLeastFor passed, the next tick runs once with a larger token`, async () => {
      const name = `mk-job-${process.pid}`;
      const tick = async () => {
        const ran: bigint[] = [];
        const results = await race(N, () =>
          withScheduledLock(name, { lockAtMostFor: 30_000, lockAtLeastFor: 400, dataSource: orm }, async (ctx) => {
            ran.push(ctx.token);
            await sleep(30);
          }),
        );
        expect(reasons(results)).to.deep.equal([]);
        return ran;
      };
      const first = await tick();
      expect(first).to.have.length(1);
      await sleep(500);
      const second = await tick();
      expect(second).to.have.length(1);
      expect(second[0] > first[0]).to.equal(true);
    });
  });

  describeServerCheck(() => ({ bouncer: bouncer!, direct, dbName }), POOL);
});
