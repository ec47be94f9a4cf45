import { expect } from 'chai';
import { Client } from 'pg';
import { DataSource, type DataSourceOptions } from 'typeorm';
import { createScheduledLockTable, dropScheduledLockTable, installLocking, withScheduledLock, type LockingHandle } from '../src';
import { dataSourceOptions } from './support/backends';
import { pgBouncerUnavailable, startPgBouncer, type PgBouncer } from './support/pgbouncer';
import { unavailableServer } from './support/postgres-user';
import { sleep } from './support/suite';

/**
 * Scheduled locks with database storage behind a transaction-mode pooler (a real PgBouncer, as
 * test/pgbouncer.test.ts starts it): each acquisition and release is one statement in autocommit
 * with no session state, so callers that share PgBouncer's few server connections still run each
 * tick once. The control without the lock runs every caller at every tick.
 */
const CALLERS = 20;
/** Server connections: fewer than the callers, so their statements share them. */
const POOL = 3;
const TICKS = 5;
const TABLE = `sched_pgb_${process.pid}`;

describe('scheduled locks behind PgBouncer in transaction mode [typeorm, postgres]', function () {
  this.timeout(60_000);
  let bouncer: PgBouncer | undefined;
  let ds: DataSource | undefined;
  let handle: LockingHandle | undefined;
  let dbName: string;
  let direct: Client | undefined;

  before(async function () {
    const why = pgBouncerUnavailable();
    if (why) unavailableServer(this, 'the scheduled-lock PgBouncer test', why);
    const base = (await dataSourceOptions('postgres', [], { fresh: false })) as (DataSourceOptions & { url: string }) | null;
    if (!base) return this.skip();
    dbName = new URL(base.url).pathname.slice(1);
    bouncer = await startPgBouncer({ databases: { [dbName]: base.url }, poolSize: POOL });
    ds = await new DataSource({ ...base, url: bouncer.url(dbName), poolSize: CALLERS + 5 } as DataSourceOptions).initialize();
    handle = await installLocking(ds);
    await createScheduledLockTable(ds, { table: TABLE });
    direct = new Client({ connectionString: base.url });
    await direct.connect();
  });

  after(async () => {
    if (ds?.isInitialized) await dropScheduledLockTable(ds, { table: TABLE }).catch(() => undefined);
    handle?.uninstall();
    if (ds?.isInitialized) await ds.destroy();
    await direct?.end().catch(() => undefined);
    await bouncer?.stop();
  });

  it("installLocking sees the pooler (pooler: 'transaction')", () => {
    expect(handle!.installation.settings.pooler).to.equal('transaction');
  });

  it(`${CALLERS} callers fire the job at each of ${TICKS} ticks over ${POOL} server connections: each tick runs exactly once, the others skip; the control runs ${CALLERS} times a tick`, async () => {
    const name = `pgb-job-${Date.now()}`;
    const runs: number[] = [];
    const control: number[] = [];
    const tokens: bigint[] = [];
    for (let tick = 0; tick < TICKS; tick++) {
      runs.push(0);
      control.push(0);
      const outcomes = await Promise.all(
        Array.from({ length: CALLERS }, async () => {
          const locked = await withScheduledLock(name, { lockAtMostFor: 10_000, lockAtLeastFor: 300, dataSource: ds, table: TABLE }, async (ctx) => {
            runs[tick]++;
            tokens.push(ctx.token);
            await ds!.query('SELECT pg_sleep(0.02)'); // the job's work, on the same pool
          });
          control[tick]++; // the control: every caller runs it
          return locked.ran;
        }),
      );
      expect(outcomes.filter(Boolean), `tick ${tick}`).to.have.length(1);
      await sleep(350); // past lockAtLeastFor: the next tick finds the job free
    }
    expect(runs).to.deep.equal(Array(TICKS).fill(1));
    expect(control).to.deep.equal(Array(TICKS).fill(CALLERS));
    expect(tokens).to.deep.equal(Array.from({ length: TICKS }, (_, i) => BigInt(i + 1))); // the run counter of the lock row
    // the statements went through PgBouncer's few server connections
    const admin = await bouncer!.admin();
    try {
      const servers = (await admin.query('SHOW SERVERS')).rows.filter((s: any) => s.database === dbName);
      expect(servers.length).to.be.within(1, POOL);
    } finally {
      await admin.end();
    }
  });

  it('lockAtLeastFor through the pooler: a fast run keeps the job taken until lockAtLeastFor from its start, by the database clock', async () => {
    const name = `pgb-least-${Date.now()}`;
    const opts = { lockAtMostFor: 10_000, lockAtLeastFor: 500, dataSource: ds, table: TABLE };
    expect(await withScheduledLock(name, opts, () => 'first')).to.deep.equal({ ran: true, result: 'first' });
    expect(await withScheduledLock(name, opts, () => 'too soon')).to.deep.equal({ ran: false });
    const [row] = (await direct!.query(`SELECT locked_until - locked_at AS held FROM "${TABLE}" WHERE name = $1`, [name])).rows;
    expect(row.held.milliseconds ?? 0).to.equal(500);
    await sleep(550);
    expect(await withScheduledLock(name, opts, () => 'next')).to.deep.equal({ ran: true, result: 'next' });
  });
});
