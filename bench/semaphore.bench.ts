/**
 * Counting semaphores (permits 3), uncontended, one operation at a time, so the figures are
 * round-trip latency plus library overhead:
 * - Redis, 1 node: ormlock's `redlock.semaphore(…).tryAcquire + release` against
 *   redis-semaphore's `Semaphore` (tryAcquire + release, no refresh timer);
 * - Redis, 3 nodes: against redis-semaphore's `RedlockSemaphore`. Note the quorums: ormlock
 *   waits for every node's grant (3 permits on 3 nodes need all three, see
 *   src/redis/semaphore.ts), RedlockSemaphore for a majority; so a second pair compares them
 *   with 1 permit, where both wait for 2 of 3;
 * - PostgreSQL and MariaDB: `withSemaphore(name, 3, noop)` (transaction scope) against a
 *   hand-written loop doing the same statements on a QueryRunner: BEGIN, a try-lock of one of 3
 *   slots, the token from the sequence, COMMIT (MariaDB: RELEASE_LOCK after it).
 * Each comparison is the median over the rounds of the per-round ops/s ratio with a 95 %
 * interval, and an A/A row (a second instance of the reference against the first) shows the
 * noise floor of the run.
 *
 * Run: npx ts-node --transpile-only bench/semaphore.bench.ts [--quick] [--rounds 100] [--ops 10000]
 *      npm run bench                (the same, among the extras of bench/run.ts)
 */
import type Redis from 'ioredis';
import type { DataSource } from 'typeorm';
import { withSemaphore } from '../src';
import { Redlock } from '../src/redis/redlock';
import { teardownBackends, type BackendName } from '../test/support/backends';
import { startRedisNodes } from '../test/support/redis-servers';
import { medianWithInterval } from './harness';
import { commandsPerOp, fencingDataSource, measureAll, type Case, type Op } from './redlock.bench';

export interface SemaphoreBenchRow {
  where: string;
  case: string;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerOp: number;
  /** Median over the rounds of ops/s ÷ the reference's ops/s in the same round, with its 95 % interval. */
  vsRef?: string;
  redisCmdsPerOp?: number;
  sqlPerOp?: number;
}

const PERMITS = 3;

/** The hand-written N-slot loop on one QueryRunner: the statements withSemaphore sends, in the same order. */
function handWritten(ds: DataSource, backend: BackendName, name: string): Op {
  const slots = Array.from({ length: PERMITS }, (_, i) => `${name}#${i}`);
  return async () => {
    const qr = ds.createQueryRunner();
    try {
      await qr.connect();
      await qr.startTransaction();
      const first = Math.floor(Math.random() * PERMITS);
      let slot: string | undefined;
      for (let k = 0; k < PERMITS && !slot; k++) {
        const candidate = slots[(first + k) % PERMITS];
        const [row] = backend === 'postgres'
          ? await qr.query('SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS got', [candidate])
          : await qr.query('SELECT GET_LOCK(?, 0) AS got', [candidate]);
        if (row.got === true || Number(row.got) === 1) slot = candidate;
      }
      if (!slot) throw new Error('hand-written: no slot free');
      await qr.query(backend === 'postgres' ? `SELECT nextval('"ormlock_fencing_seq"')::text AS token` : 'SELECT CAST(NEXTVAL(`ormlock_fencing_seq`) AS CHAR) AS token');
      await qr.commitTransaction();
      if (backend !== 'postgres') await qr.query('SELECT RELEASE_LOCK(?)', [slot]);
    } finally {
      await qr.release();
    }
  };
}

export async function benchSemaphore(opts: { quick: boolean; ops?: number; rounds?: number }): Promise<{ rows: SemaphoreBenchRow[]; notes: string[] }> {
  const rounds = opts.rounds ?? (opts.quick ? 3 : 100);
  const ops = opts.ops ?? (opts.quick ? 150 : rounds * 100);
  const ttl = 5000;
  const prefix = `ormlock-sem-bench:${process.pid}:`;
  const notes: string[] = [];
  const { Semaphore: RsSemaphore, RedlockSemaphore } = await import('redis-semaphore');
  const nodes = await startRedisNodes((reason) => {
    throw new Error(`semaphore bench needs Redis: ${reason}`);
  });
  type Cell = Case & { where: string; clients?: Redis[]; statements?: () => number };
  const cells: Cell[] = [];
  const closers: Array<() => Promise<void>> = [];
  try {
    for (const n of [1, 3]) {
      const where = `Redis ${n} node${n > 1 ? 's' : ''}`;
      const fresh = async () => {
        const clients = nodes.clients().slice(0, n);
        await nodes.waitReady(clients);
        return clients;
      };
      const oursClients = await fresh();
      const ours = new Redlock(oursClients, { prefix: `${prefix}${n}:` }).semaphore('a', PERMITS);
      const oursOp: Op = async () => {
        const permit = await ours.tryAcquire(ttl);
        if (!permit) throw new Error('ormlock: no permit');
        await permit.release();
      };
      const ref = n === 1 ? 'redis-semaphore Semaphore' : 'redis-semaphore RedlockSemaphore';
      const theirs = async (key: string) => {
        const clients = await fresh();
        const options = { lockTimeout: ttl, acquireAttemptsLimit: 1, refreshInterval: 0 };
        const sem = n === 1 ? new RsSemaphore(clients[0], `${prefix}${key}`, PERMITS, options) : new RedlockSemaphore(clients, `${prefix}${key}`, PERMITS, options);
        const op: Op = async () => {
          if (!(await sem.tryAcquire())) throw new Error(`${ref}: no permit`);
          await sem.release();
        };
        return { clients, op };
      };
      const first = await theirs(`rs${n}:a`);
      const second = await theirs(`rs${n}:b`);
      if (n === 3) {
        // the same comparison at an equal quorum (2 of 3): 1 permit, where a majority is enough
        const one = new Redlock(await fresh(), { prefix: `${prefix}${n}:` }).semaphore('one', 1);
        const oneOp: Op = async () => {
          const permit = await one.tryAcquire(ttl);
          if (!permit) throw new Error('ormlock: no permit');
          await permit.release();
        };
        const theirsOne = new RedlockSemaphore(await fresh(), `${prefix}rs-one`, 1, { lockTimeout: ttl, acquireAttemptsLimit: 1, refreshInterval: 0 });
        cells.push(
          { where, nodes: n, name: 'ormlock semaphore, 1 permit (quorum 2)', op: oneOp, vs: `${ref}, 1 permit` },
          {
            where,
            nodes: n,
            name: `${ref}, 1 permit`,
            op: async () => {
              if (!(await theirsOne.tryAcquire())) throw new Error(`${ref}: no permit`);
              await theirsOne.release();
            },
          },
        );
      }
      cells.push(
        { where, nodes: n, name: 'ormlock semaphore tryAcquire+release', op: oursOp, vs: `${ref} tryAcquire+release`, clients: oursClients },
        { where, nodes: n, name: `${ref} tryAcquire+release`, op: first.op, clients: first.clients },
        { where, nodes: n, name: `A/A: a 2nd ${ref}`, op: second.op, vs: `${ref} tryAcquire+release` },
      );
    }
    for (const backend of ['postgres', 'mariadb'] as BackendName[]) {
      const db = await fencingDataSource(backend);
      if (!db) {
        notes.push(`${backend} unavailable: no database cell`);
        continue;
      }
      closers.push(db.close);
      const where = backend === 'postgres' ? 'PostgreSQL' : 'MariaDB';
      const hand = 'hand-written N-slot advisory loop';
      cells.push(
        { where, nodes: 0, name: 'ormlock withSemaphore(noop)', op: () => withSemaphore(`bench-${process.pid}`, PERMITS, async () => undefined, { dataSource: db.ds }), vs: hand, statements: db.statements },
        { where, nodes: 0, name: hand, op: handWritten(db.ds, backend, `bench-hand-${process.pid}`), statements: db.statements },
        { where, nodes: 0, name: `A/A: a 2nd ${hand}`, op: handWritten(db.ds, backend, `bench-hand2-${process.pid}`), vs: hand },
      );
    }

    const measured = await measureAll(cells, ops, rounds);
    const rows: SemaphoreBenchRow[] = [];
    for (const [k, c] of cells.entries()) {
      const m = measured[k];
      const row: SemaphoreBenchRow = { where: c.where, case: c.name, opsPerSec: m.opsPerSec, p50Ms: m.p50Ms, p99Ms: m.p99Ms, cpuUsPerOp: m.cpuUsPerOp };
      const j = c.vs ? cells.findIndex((x) => x.where === c.where && x.name === c.vs) : -1;
      if (j >= 0) {
        const r = medianWithInterval(m.perRound.map((v, i) => v / measured[j].perRound[i]));
        row.vsRef = `${r.median.toFixed(2)}x [${r.low.toFixed(2)}, ${r.high.toFixed(2)}]`;
      }
      if (c.clients) row.redisCmdsPerOp = await commandsPerOp(c.clients, c.op);
      if (c.statements) {
        const before = c.statements();
        for (let i = 0; i < 50; i++) await c.op();
        row.sqlPerOp = (c.statements() - before) / 50;
      }
      rows.push(row);
    }
    notes.push(`${rounds} rounds, ${ops} operations per case; vsRef: median of per-round ratios to the reference of the same place, 95 % interval`);
    return { rows, notes };
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    await nodes.close();
  }
}

if (require.main === module) {
  const value = (name: string) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : undefined);
  benchSemaphore({ quick: process.argv.includes('--quick'), rounds: value('--rounds'), ops: value('--ops') }).then(
    async (result) => {
      console.table(result.rows);
      for (const n of result.notes) console.log(`note: ${n}`);
      await teardownBackends().catch(() => undefined);
      process.exit(0);
    },
    async (error) => {
      console.error(error);
      await teardownBackends().catch(() => undefined);
      process.exit(1);
    },
  );
}
