import { expect } from 'chai';
import { Client } from 'pg';
import { DataSource, EventSubscriber, type DataSourceOptions, type EntitySubscriberInterface, type InsertEvent, type ObjectLiteral } from 'typeorm';
import {
  LockConfigError,
  createFencingTable,
  createScheduledLockTable,
  installLocking,
  transaction,
  withScheduledLock,
  withSemaphore,
  type LockingHandle,
} from '../src';
import { Barrier, race } from '../src/testing';
import { AdvisoryDoc, PlainDoc, SectionRecorder, overlaps } from './fixtures/advisory-entities';
import { NestedSetSubscriber, NsPage, NsPagePlain, NsSite, nestedSetTiming, type NsPageBase } from './fixtures/nested-set';
import { LockedNs, PlainNs, type TreeNode } from './fixtures/trees';
import { Overlap } from './fixtures/two-sources';
import { dataSourceOptions } from './support/backends';
import { SESSION_SETTINGS_SQL, advisoryLocksOn, everyServer, pgBouncerUnavailable, serverPids, startPgBouncer, type PgBouncer } from './support/pgbouncer';
import { startOrSkip, unavailableServer } from './support/postgres-user';
import { sleep } from './support/suite';
import { nestedSetProblems } from './support/nested-set';
import { reasons } from './support/rejection';

/**
 * Production set-ups, the strategies test/pgbouncer.test.ts does not race: entity-class
 * @AdvisoryLock, @AroundCreate(lockParent), @LockedTree, the database semaphore (transaction
 * scope, both of its paths; session scope refused) and the database scheduled lock, each under
 * 20 racing callers through a real PgBouncer in transaction mode, each with its control. At the
 * end, no lock and no setting is left on any of this PgBouncer's server connections, checked on
 * the server itself.
 */

const N = 20;
/** Server connections: fewer than the racing callers, so transactions share them. */
const POOL = 6;
const ENTITIES = [AdvisoryDoc, PlainDoc, NsSite, NsPage, NsPagePlain, LockedNs, PlainNs];
const NS = `pgbs-${process.env.ORMLOCK_TEST_DB}`;
const SESSION_REFUSED = /session-scope advisory locks cannot work behind a transaction-pooling connection pooler/;

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e) => e,
  );

/**
 * The schedule of the section-overlap control (the unlocked PlainDoc only, never the locked entity,
 * whose holder would wait there for the callers blocked on its lock), set by the control while it
 * runs: a PlainDoc write waits after its INSERT, before COMMIT, until `sections.parties` writes are
 * there, and then until the clock has moved past that moment, so all their sections overlap. It
 * waits inside the save's transaction, on one of PgBouncer's POOL server connections: parties ≤ POOL.
 */
@EventSubscriber()
class ControlSchedule implements EntitySubscriberInterface {
  static sections?: Barrier;

  async afterInsert(event: InsertEvent<ObjectLiteral>): Promise<void> {
    const barrier = ControlSchedule.sections;
    if (!barrier || !(event.entity instanceof PlainDoc)) return;
    await barrier.wait(); // every waiting write has recorded its section's start (SectionRecorder, in the same broadcast)
    const opened = Date.now();
    while (Date.now() <= opened) await sleep(1); // so every end is later than every start
  }
}

describe('production set-ups: every other strategy through PgBouncer in transaction mode [typeorm, postgres]', function () {
  this.timeout(120_000);
  let bouncer: PgBouncer | undefined;
  let base: DataSourceOptions & { url: string };
  let dbName: string;
  let ds: DataSource;
  let handle: LockingHandle;
  let direct: Client;

  before(async function () {
    const why = pgBouncerUnavailable();
    if (why) unavailableServer(this, 'the PgBouncer strategy tests', why);
    const options = await dataSourceOptions('postgres', ENTITIES, { subscribers: [SectionRecorder, NestedSetSubscriber, ControlSchedule] });
    if (!options) return this.skip();
    base = options as DataSourceOptions & { url: string };
    dbName = new URL(base.url).pathname.slice(1);
    // the schema, made directly on the server
    await new DataSource(base).initialize().then((d) => d.destroy());
    bouncer = await startOrSkip(this, 'the PgBouncer strategy tests', () => startPgBouncer({ databases: { [dbName]: base.url }, poolSize: POOL }));
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

  it("installLocking sees PgBouncer: pooler 'transaction', detected", () => {
    expect(handle.installation.settings).to.include({ pooler: 'transaction', poolerDetected: true });
  });

  describe('entity-class @AdvisoryLock', () => {
    it(`control: ${N} racing saves of one slot without the lock overlap`, async () => {
      SectionRecorder.sections = [];
      const plain = ds.getRepository(PlainDoc);
      // the first POOL writes are all inside their sections at once (left to overlap, writes could run one after another)
      ControlSchedule.sections = new Barrier(POOL);
      try {
        expect(reasons(await race(N, (i) => plain.save(plain.create({ slot: 1, n: i }))))).to.deep.equal([]);
      } finally {
        ControlSchedule.sections = undefined;
      }
      const control = SectionRecorder.sections.filter((s) => s.kind === 'PlainDoc');
      console.log(`      control: ${overlaps(control).length} overlapping pairs of ${N} write sections`);
      expect(control).to.have.length(N);
      expect(overlaps(control).length, `at least the ${POOL} sections inside at once overlap pairwise`).to.be.at.least((POOL * (POOL - 1)) / 2);
    });

    it(`@AdvisoryLock((doc) => ['doc', doc.slot]): ${N} racing saves of one slot never overlap (transaction-scope lock, held until COMMIT)`, async () => {
      SectionRecorder.sections = [];
      const docs = ds.getRepository(AdvisoryDoc);
      expect(reasons(await race(N, (i) => docs.save(docs.create({ slot: 1, n: i }))))).to.deep.equal([]);
      const locked = SectionRecorder.sections.filter((s) => s.kind === 'AdvisoryDoc');
      expect(locked).to.have.length(N);
      expect(overlaps(locked)).to.deep.equal([]);
    });
  });

  describe("@AroundCreate(lockParent('site'))", () => {
    /** N creations of a page in one site at once; the subscriber computes lft/rgt from the site's max(rgt). */
    async function createPages(cls: typeof NsPage | typeof NsPagePlain) {
      const site = await ds.getRepository(NsSite).save({ name: cls.name });
      const pages = ds.getRepository<NsPageBase>(cls);
      const failures = reasons(await race(N, (i) => pages.save(pages.create({ title: `p${i}`, siteId: site.id }))));
      const rows = await pages.find({ where: { siteId: site.id }, order: { lft: 'ASC' } });
      return { failures, rows, problems: nestedSetProblems(rows.map((r) => ({ left: r.lft, right: r.rgt }))) };
    }

    it(`control: ${N} racing page creations without @AroundCreate corrupt the nested set`, async () => {
      // the first POOL creations have all read the site's max(rgt), 0, before any inserts: they all take [1, 2]
      // (left to overlap, creations could run one after another: a valid nested set). Each waits inside
      // its save's transaction, on one of PgBouncer's POOL server connections: POOL parties at most.
      const allComputed = new Barrier(POOL);
      nestedSetTiming.onComputed = (page) => (page instanceof NsPagePlain ? allComputed.wait() : undefined);
      let result: Awaited<ReturnType<typeof createPages>>;
      try {
        result = await createPages(NsPagePlain);
      } finally {
        nestedSetTiming.onComputed = undefined;
      }
      const { failures, rows, problems } = result;
      expect(failures).to.deep.equal([]);
      expect(rows).to.have.length(N);
      console.log(`      control: ${problems.length} problems, e.g. ${problems.slice(0, 2).join('; ')}`);
      expect(rows.filter((r) => r.lft === 1 && r.rgt === 2).length, `at least ${POOL} pages on [1, 2]`).to.be.at.least(POOL);
      expect(problems, 'duplicate or overlapping intervals without the parent lock').to.include(`bound 1 used ${rows.filter((r) => r.lft === 1).length} times`);
    });

    it(`${N} racing page creations with the parent row locked: distinct, consecutive intervals`, async () => {
      const { failures, rows, problems } = await createPages(NsPage);
      expect(failures).to.deep.equal([]);
      expect(rows).to.have.length(N);
      expect(problems).to.deep.equal([]);
      expect(rows.map((r) => r.lft)).to.deep.equal(Array.from({ length: N }, (_, i) => 2 * i + 1));
    });
  });

  describe('@LockedTree (TypeORM nested set)', () => {
    /** A root, then N inserts at once under it; every node's [nsleft, nsright] read back. */
    async function treeRace(cls: typeof LockedNs | typeof PlainNs) {
      const m = ds.getMetadata(cls);
      await direct.query(`TRUNCATE "${m.tablePath}" RESTART IDENTITY`);
      const repo = ds.getRepository<TreeNode>(cls);
      const root = await repo.save(repo.create({ name: 'root', parent: null } as ObjectLiteral));
      const failures = reasons(await race(N, (i) => repo.save(repo.create({ name: `n${i}`, parent: root } as ObjectLiteral))));
      const left = m.nestedSetLeftColumn!.databaseName;
      const right = m.nestedSetRightColumn!.databaseName;
      const { rows } = await direct.query(`SELECT "${left}" AS left, "${right}" AS right FROM "${m.tablePath}"`);
      return { failures, count: rows.length, problems: nestedSetProblems(rows.map((r) => ({ left: Number(r.left), right: Number(r.right) }))) };
    }

    it(`control: without @LockedTree, ${N} racing inserts corrupt the tree (or fail) in one of up to 5 rounds`, async () => {
      const seen: string[] = [];
      for (let round = 0; round < 5 && seen.length === 0; round++) {
        const { failures, problems } = await treeRace(PlainNs);
        seen.push(...problems, ...failures.map((e) => `insert failed: ${String(e?.message).slice(0, 60)}`));
      }
      console.log(`      control: ${seen.length} problems, e.g. ${seen.slice(0, 2).join('; ')}`);
      expect(seen.length, 'the control must show the anomaly').to.be.greaterThan(0);
    });

    it(`@LockedTree(): ${N} racing inserts give a valid nested set, none failed`, async () => {
      const { failures, count, problems } = await treeRace(LockedNs);
      expect(failures).to.deep.equal([]);
      expect(count).to.equal(N + 1);
      expect(problems).to.deep.equal([]);
    });
  });

  describe('database semaphore (withSemaphore), 3 permits', () => {
    const PERMITS = 3;

    before(async () => {
      await createFencingTable(ds);
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
      const name = `sem-own-${process.pid}`;
      const tokens = new Set<bigint>();
      const { failures, ran, max } = await semaphoreRace((body) =>
        withSemaphore(
          name,
          PERMITS,
          async (permit) => {
            tokens.add(permit.token);
            await body();
          },
          { timeoutMs: 30_000 },
        ),
      );
      expect(failures).to.deep.equal([]);
      expect(ran).to.equal(N);
      expect(max).to.be.within(1, PERMITS);
      expect(tokens.size).to.equal(N);
    });

    it(`transaction scope inside the caller's transaction (one slot per statement): ${N} racing callers, never more than ${PERMITS} inside`, async () => {
      const name = `sem-tx-${process.pid}`;
      const { failures, ran, max } = await semaphoreRace((body) => transaction(() => withSemaphore(name, PERMITS, () => body(), { timeoutMs: 30_000 })));
      expect(failures).to.deep.equal([]);
      expect(ran).to.equal(N);
      expect(max).to.be.within(1, PERMITS);
    });

    it('session scope is refused with LockConfigError; the body never runs', async () => {
      let ran = false;
      const err = await rejection(withSemaphore(`sem-session-${process.pid}`, PERMITS, () => void (ran = true), { scope: 'session' }));
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(SESSION_REFUSED);
      expect(ran).to.equal(false);
    });
  });

  describe('database scheduled lock (withScheduledLock)', () => {
    const TABLE = 'ormlock_scheduled_locks';

    before(async () => {
      await createScheduledLockTable(ds);
    });

    it(`control: ${N} racing instances that all read the lock row, then take it, all run the same tick`, async () => {
      const name = `ctl-job-${process.pid}`;
      const allRead = new Barrier(N);
      let runs = 0;
      const failures = reasons(
        await race(N, async () => {
          // autocommit reads (no connection held while waiting): every instance has read before any takes the lock
          const [row] = await allRead.wait(ds.query(`SELECT locked_until > statement_timestamp() AS held FROM "${TABLE}" WHERE name = $1`, [name]));
          if (row?.held) return;
          await ds.query(
            `INSERT INTO "${TABLE}" (name, locked_until, locked_at, locked_by, runs) VALUES ($1, statement_timestamp() + interval '1 minute', statement_timestamp(), 'ctl', 1)
             ON CONFLICT (name) DO UPDATE SET locked_until = EXCLUDED.locked_until, runs = "${TABLE}".runs + 1`,
            [name],
          );
          runs++;
        }),
      );
      expect(failures).to.deep.equal([]);
      console.log(`      control: ${runs} of ${N} instances ran the tick`);
      expect(runs, 'every instance found the lock free').to.equal(N);
      expect(Number((await ds.query(`SELECT runs FROM "${TABLE}" WHERE name = $1`, [name]))[0].runs)).to.equal(N);
    });

    it(`${N} racing instances of one job: exactly one runs the tick; once lockAtLeastFor passed, the next tick runs once with a larger token`, async () => {
      const name = `job-${process.pid}`;
      const tick = async () => {
        const ran: bigint[] = [];
        const results = await race(N, () =>
          withScheduledLock(name, { lockAtMostFor: 30_000, lockAtLeastFor: 400 }, async (ctx) => {
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

  describe('after the suite, on the server itself', () => {
    it('no advisory lock is held by any backend of this database', async () => {
      expect(await advisoryLocksOn(direct, dbName)).to.deep.equal([]);
    });

    it('control: the settings check sees a plain SET left on a session', async () => {
      const c = new Client({ connectionString: base.url });
      await c.connect();
      try {
        await c.query(`SET lock_timeout = '1234ms'`);
        expect((await c.query(`SELECT ${SESSION_SETTINGS_SQL} AS s`)).rows[0].s).to.equal('lock_timeout=1234');
      } finally {
        await c.end();
      }
    });

    it("every server connection of PgBouncer's pool has the default lock_timeout, no setting changed by a session, and holds no lock", async () => {
      const servers = await serverPids(bouncer!, dbName);
      expect(servers.length).to.be.within(1, POOL);
      // pin all POOL server connections at once (each client in a transaction holds one), and ask each
      const seen = await everyServer(bouncer!, dbName, POOL);
      expect(new Set(seen.map((r) => r.pid)).size).to.equal(POOL);
      for (const pid of servers)
        expect(
          seen.map((r) => r.pid),
          `server pid ${pid}`,
        ).to.include(pid);
      for (const row of seen) expect(row).to.include({ lock_timeout: '0', locks: 0, session_settings: '' });
    });
  });
});
