/**
 * Counting semaphores (permits 3), uncontended, one operation at a time, so the figures are
 * round-trip latency plus library overhead; each comparison is at equal round trips unless it
 * says otherwise (the round trips of both sides are counted, not assumed):
 * - Redis, 1 node: ormlock's `redlock.semaphore(…).tryAcquire + release` against
 *   redis-semaphore's `Semaphore` (tryAcquire + release, no refresh timer): one script call to
 *   acquire and a plain ZREM to release, on both sides;
 * - Redis, 3 nodes: against redis-semaphore's `RedlockSemaphore`. Note the quorums: ormlock
 *   needs every node's grant (3 permits on 3 nodes need all three, see src/redis/semaphore.ts),
 *   RedlockSemaphore a majority, though it waits for every node's answer (Promise.all) before it
 *   counts; a second pair compares them with 1 permit, where both need 2 of 3 (ormlock then
 *   decides on the first two equal grants);
 * - Redis, the floor: ormlock's acquisition script and a ZREM sent by hand (Promise.all over the
 *   nodes), no library: how far either library is from the bare commands (ormlock's row shows
 *   its ratio to it too);
 * - PostgreSQL and MariaDB: `withSemaphore(name, 3, noop)` (transaction scope; BEGIN, one
 *   statement that tries the slots and draws the token, COMMIT; MariaDB: RELEASE_LOCK after it)
 *   against the same statements hand-written on a QueryRunner (equal statements and work; on
 *   PostgreSQL ormlock sends BEGIN with its statement, one round trip fewer),
 *   with its A/A row; and, for scale, against a hand-written per-slot loop (a try-lock per slot,
 *   then the token: one round trip more) and that loop without the token (equal round trips, no
 *   fencing).
 * Interleaved rounds (bench/interleaved.ts): each ratio is the median over the rounds of the
 * per-round ops/s ratio with a 95 % interval, and an A/A row (a second instance of the
 * reference against the first) shows the noise floor of the run.
 *
 * Run: npx ts-node --transpile-only bench/semaphore.bench.ts [--quick] [--rounds 100] [--ops 10000] [--redis]
 *      (--redis: the Redis cells alone)
 *      npm run bench                (the same, among the extras of bench/run.ts)
 */
import type Redis from 'ioredis';
import type { DataSource } from 'typeorm';
import { withSemaphore } from '../src';
import { leaseValue } from '../src/redis/lease-value';
import { Redlock } from '../src/redis/redlock';
import { SEM_ACQUIRE } from '../src/redis/semaphore-scripts';
import { teardownBackends, type BackendName } from '../test/support/backends';
import { startRedisNodes } from '../test/support/redis-servers';
import { commandsPerOp, fencingDataSource, formatRatio, measureAll, roundRatio, statementsPerOp, type Case, type Op } from './interleaved';

export interface SemaphoreBenchRow {
  where: string;
  case: string;
  /** Sequential round trips per operation: SQL statements, or Redis commands ÷ nodes (every call goes to every node at once). */
  roundTripsPerOp?: number;
  /** Redis commands per operation, summed over the nodes. */
  redisCmdsPerOp?: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerOp: number;
  /** The case this row is compared with (same place). */
  vs?: string;
  /** Median over the rounds of ops/s ÷ that case's ops/s in the same round, with its 95 % interval. */
  ratio?: string;
  /** Further comparisons, `case: ratio; …` (for scale: other round trips or no fencing token). */
  alsoVs?: string;
}

const PERMITS = 3;
const PERMITS_TEXT = String(PERMITS);

/** The hand-written N-slot loop on one QueryRunner: a try-lock per slot until one is taken, then the token (`token: false`: without it). */
function handWritten(ds: DataSource, backend: BackendName, name: string, token: boolean): Op {
  const slots = Array.from({ length: PERMITS }, (_, i) => `${name}#${i}`);
  const trySql = backend === 'postgres' ? 'SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS got' : 'SELECT GET_LOCK(?, 0) AS got';
  const tokenSql =
    backend === 'postgres' ? `SELECT nextval('"ormlock_fencing_seq"')::text AS token` : 'SELECT CAST(NEXTVAL(`ormlock_fencing_seq`) AS CHAR) AS token';
  return async () => {
    const qr = ds.createQueryRunner();
    try {
      await qr.connect();
      await qr.startTransaction();
      const first = Math.floor(Math.random() * PERMITS);
      let slot: string | undefined;
      for (let k = 0; k < PERMITS && !slot; k++) {
        const candidate = slots[(first + k) % PERMITS];
        const [row] = await qr.query(trySql, [candidate]);
        if (row.got === true || Number(row.got) === 1) slot = candidate;
      }
      if (!slot) throw new Error('hand-written: no slot free');
      if (token) await qr.query(tokenSql);
      await qr.commitTransaction();
      if (backend !== 'postgres') await qr.query('SELECT RELEASE_LOCK(?)', [slot]);
    } finally {
      await qr.release();
    }
  };
}

/**
 * The hand-written equivalent of what withSemaphore sends: BEGIN, ONE statement that takes the
 * first free of the slots (from a random one) and draws the token, COMMIT (MariaDB: then
 * RELEASE_LOCK, its GET_LOCK being a session lock).
 */
function handOneStatement(ds: DataSource, backend: BackendName, name: string): Op {
  const ids = Array.from({ length: PERMITS }, (_, i) => `${name}#${i}`);
  const sql =
    backend === 'postgres'
      ? `SELECT s.i AS slot, nextval('"ormlock_fencing_seq"')::text AS token FROM unnest($1::text[]) WITH ORDINALITY AS s(id, i)
        WHERE pg_try_advisory_xact_lock(hashtextextended(s.id, 0)) LIMIT 1`
      : `SELECT CASE${ids.map(() => ' WHEN GET_LOCK(?, 0) = 1 THEN ?').join('')} ELSE NULL END AS slot, CAST(NEXTVAL(\`ormlock_fencing_seq\`) AS CHAR) AS token`;
  return async () => {
    const first = Math.floor(Math.random() * PERMITS);
    const order = [...ids.slice(first), ...ids.slice(0, first)];
    const qr = ds.createQueryRunner();
    try {
      await qr.connect();
      await qr.startTransaction();
      const [row] = await qr.query(sql, backend === 'postgres' ? [order] : order.flatMap((id, i) => [id, i]));
      if (row?.slot === null || row?.slot === undefined) throw new Error('hand-written: no slot free');
      await qr.commitTransaction();
      if (backend !== 'postgres') await qr.query('SELECT RELEASE_LOCK(?)', [order[Number(row.slot)]]);
    } finally {
      await qr.release();
    }
  };
}

type Cell = Case & { where: string; clients?: Redis[]; also?: string[] };

/**
 * The floor of a Redis semaphore operation: ormlock's acquisition script (EVALSHA, loaded first)
 * and a ZREM sent by hand, awaited directly on 1 node and with Promise.all on several, with the
 * value from ormlock's generator (`randomBytes` per operation costs more than either library's
 * whole client side): the commands and round trips of both libraries without either's code.
 */
async function byHand(clients: Redis[], base: string, ttlMs: number): Promise<{ clients: Redis[]; op: Op }> {
  await Promise.all(clients.map((c) => c.script('LOAD', SEM_ACQUIRE.source)));
  const holders = `${base}:holders`;
  const counter = `${base}:counter`;
  const ttl = String(ttlMs);
  const [one] = clients;
  const op: Op =
    clients.length === 1
      ? async () => {
          const value = leaseValue();
          if (!(Number(await one.evalsha(SEM_ACQUIRE.sha, 2, holders, counter, value, ttl, PERMITS_TEXT, '0')) > 0)) throw new Error('floor: no permit');
          await one.zrem(holders, value);
        }
      : async () => {
          const value = leaseValue();
          const tokens = await Promise.all(clients.map((c) => c.evalsha(SEM_ACQUIRE.sha, 2, holders, counter, value, ttl, PERMITS_TEXT, '0')));
          if (!tokens.every((t) => Number(t) > 0)) throw new Error('floor: no permit');
          await Promise.all(clients.map((c) => c.zrem(holders, value)));
        };
  return { clients, op };
}

export async function benchSemaphore(opts: {
  quick: boolean;
  ops?: number;
  rounds?: number;
  /** Only the Redis cells (no database). */
  redisOnly?: boolean;
}): Promise<{ rows: SemaphoreBenchRow[]; notes: string[] }> {
  const rounds = opts.rounds ?? (opts.quick ? 3 : 100);
  const ops = opts.ops ?? (opts.quick ? 150 : rounds * 100);
  const ttl = 5000;
  const prefix = `ormlock-sem-bench:${process.pid}:`;
  const notes: string[] = [];
  const { Semaphore: RsSemaphore, RedlockSemaphore } = await import('redis-semaphore');
  const nodes = await startRedisNodes((reason) => {
    throw new Error(`semaphore bench needs Redis: ${reason}`);
  });
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
      const ormlock = async (name: string, permits: number) => {
        const clients = await fresh();
        const sem = new Redlock(clients, { prefix: `${prefix}${n}:` }).semaphore(name, permits);
        const op: Op = async () => {
          const permit = await sem.tryAcquire(ttl);
          if (!permit) throw new Error('ormlock: no permit');
          await permit.release();
        };
        return { clients, op };
      };
      const ref = n === 1 ? 'redis-semaphore Semaphore' : 'redis-semaphore RedlockSemaphore';
      const theirs = async (key: string, permits: number) => {
        const clients = await fresh();
        const options = { lockTimeout: ttl, acquireAttemptsLimit: 1, refreshInterval: 0 };
        const sem =
          n === 1 ? new RsSemaphore(clients[0], `${prefix}${key}`, permits, options) : new RedlockSemaphore(clients, `${prefix}${key}`, permits, options);
        const op: Op = async () => {
          if (!(await sem.tryAcquire())) throw new Error(`${ref}: no permit`);
          await sem.release();
        };
        return { clients, op };
      };
      const refName = `${ref} tryAcquire+release`;
      const floor = 'floor: the same two commands by hand, no library';
      cells.push(
        { where, nodes: n, name: 'ormlock semaphore tryAcquire+release', vs: refName, also: [floor], ...(await ormlock('a', PERMITS)) },
        { where, nodes: n, name: refName, ...(await theirs(`rs${n}:a`, PERMITS)) },
        { where, nodes: n, name: `A/A: a 2nd ${ref}`, vs: refName, ...(await theirs(`rs${n}:b`, PERMITS)) },
        { where, nodes: n, name: floor, vs: refName, ...(await byHand(await fresh(), `${prefix}floor${n}`, ttl)) },
      );
      if (n === 3) {
        // the same comparison at an equal quorum (2 of 3): 1 permit, where a majority is enough
        cells.push(
          { where, nodes: n, name: 'ormlock semaphore, 1 permit (quorum 2)', vs: `${ref}, 1 permit`, ...(await ormlock('one', 1)) },
          { where, nodes: n, name: `${ref}, 1 permit`, ...(await theirs('rs-one', 1)) },
        );
      }
    }
    for (const backend of (opts.redisOnly ? [] : ['postgres', 'mariadb']) as BackendName[]) {
      const db = await fencingDataSource(backend);
      if (!db) {
        notes.push(`${backend} unavailable: no database cell`);
        continue;
      }
      closers.push(db.close);
      const where = backend === 'postgres' ? 'PostgreSQL' : 'MariaDB';
      const hand = 'hand-written: the same statements';
      const loop = 'hand-written per-slot loop + token';
      const bare = 'hand-written per-slot loop, no token';
      const statements = db.statements;
      cells.push(
        {
          where,
          nodes: 0,
          name: 'ormlock withSemaphore(noop)',
          vs: hand,
          also: [loop, bare],
          statements,
          op: () => withSemaphore(`bench-${process.pid}`, PERMITS, async () => undefined, { dataSource: db.ds }),
        },
        { where, nodes: 0, name: hand, op: handOneStatement(db.ds, backend, `bench-one-${process.pid}`), statements },
        { where, nodes: 0, name: `A/A: ${hand}, 2nd`, op: handOneStatement(db.ds, backend, `bench-one2-${process.pid}`), vs: hand, statements },
        { where, nodes: 0, name: loop, op: handWritten(db.ds, backend, `bench-loop-${process.pid}`, true), statements },
        { where, nodes: 0, name: bare, op: handWritten(db.ds, backend, `bench-bare-${process.pid}`, false), statements },
      );
    }

    const measured = await measureAll(cells, ops, rounds);
    const find = (where: string, name: string | undefined) => (name ? cells.findIndex((x) => x.where === where && x.name === name) : -1);
    const rows: SemaphoreBenchRow[] = [];
    for (const [k, c] of cells.entries()) {
      const m = measured[k];
      const row = { where: c.where, case: c.name } as SemaphoreBenchRow; // the figures follow the round trips (column order of the table)
      if (c.clients) {
        row.redisCmdsPerOp = await commandsPerOp(c.clients, c.op);
        row.roundTripsPerOp = Math.round((row.redisCmdsPerOp / c.nodes) * 100) / 100;
      }
      if (c.statements) row.roundTripsPerOp = await statementsPerOp(c.statements, c.op);
      Object.assign(row, { opsPerSec: m.opsPerSec, p50Ms: m.p50Ms, p99Ms: m.p99Ms, cpuUsPerOp: m.cpuUsPerOp });
      const j = find(c.where, c.vs);
      if (j >= 0) Object.assign(row, { vs: c.vs, ratio: formatRatio(roundRatio(m, measured[j])) });
      if (c.also) row.alsoVs = c.also.map((other) => `${other}: ${formatRatio(roundRatio(m, measured[find(c.where, other)]))}`).join('; ');
      rows.push(row);
    }
    notes.push(
      `${rounds} interleaved rounds, ${ops} operations per case; ratio: median of the per-round ops/s ratios to \`vs\` (same place), 95 % interval; ` +
        'the A/A row is the noise floor of this run; round trips per op counted on the clients (Redis: commands ÷ nodes)',
    );
    return { rows, notes };
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    await nodes.close();
  }
}

if (require.main === module) {
  const value = (name: string) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : undefined);
  benchSemaphore({ quick: process.argv.includes('--quick'), rounds: value('--rounds'), ops: value('--ops'), redisOnly: process.argv.includes('--redis') }).then(
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
