/**
 * Redis leases: ormlock's Redlock against @sesamecare-oss/redlock and redlock-universal, on one
 * node and on three local nodes (the shared Redis + two started by test/support/redis-servers),
 * side by side in one run. Sequential operations, one at a time, so the figures are round-trip
 * latency plus library overhead: `tryAcquire + release` and `using(noop)`. Also: ormlock with
 * `fencing: { dataSource }` on PostgreSQL and MariaDB (the one statement it adds per
 * acquisition), and the Redis commands each library sends per operation (counted on the clients).
 *
 * Run: npx ts-node --transpile-only bench/redlock.bench.ts [--quick] [--rounds 200] [--ops 20000]
 *      npm run bench -- --only redis            (the same, from bench/run.ts)
 */
import type Redis from 'ioredis';
import type { DataSource } from 'typeorm';
import { Redlock } from '../src/redis/redlock';
import { teardownBackends, type BackendName } from '../test/support/backends';
import { startRedisNodes } from '../test/support/redis-servers';
import { commandsPerOp, fencingDataSource, measureAll, roundRatio, statementsPerOp, type Case, type Op } from './interleaved';

export interface BenchRow {
  nodes: number;
  case: string;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time of this process per operation, µs (client-side cost; insensitive to other load on the machine). */
  cpuUsPerOp: number;
  /** ops/s ÷ @sesamecare-oss/redlock's ops/s for the same operation and nodes (ormlock rows), over the whole run. */
  vsSesame?: number;
  /** The median over the rounds of that ratio within one round (the two cases ran next to each other in time). */
  vsSesameMedian?: number;
  /** A distribution-free 95 % confidence interval of that median (order statistics of the rounds). */
  vsSesameLow?: number;
  vsSesameHigh?: number;
  /** Redis commands sent per operation, summed over the nodes (acquire + release). */
  redisCommands?: number;
  /** Database statements per operation (fencing rows). */
  statements?: number;
}

export async function benchRedlock(opts: { quick: boolean; ops?: number; rounds?: number }): Promise<{ rows: BenchRow[]; notes: string[] }> {
  // Many short interleaved chunks: a burst of load from elsewhere on the machine hits every case
  // alike, and the median of the per-round ratios (with its interval) ignores the rounds it hit one harder.
  const rounds = opts.rounds ?? (opts.quick ? 3 : 200);
  const ops = opts.ops ?? (opts.quick ? 300 : rounds * 100);
  const ttl = 5000;
  const prefix = `ormlock-bench:${process.pid}:`;
  const notes: string[] = [];
  const nodes = await startRedisNodes((reason) => {
    throw new Error(`redlock bench needs Redis: ${reason}`);
  });
  const cases: Case[] = [];
  const counted: Array<{ nodes: number; name: string; clients: Redis[]; op: Op }> = [];
  const closers: Array<() => Promise<void>> = [];
  try {
    const { Redlock: SesameRedlock } = await import('@sesamecare-oss/redlock');
    let universal: typeof import('redlock-universal') | undefined;
    try {
      universal = await import('redlock-universal');
    } catch (error) {
      notes.push(`redlock-universal does not load on Node ${process.version}: ${(error as Error).message}`);
    }
    const fencingDbs: Array<{ backend: BackendName; ds: DataSource; statements: () => number }> = [];
    if (!opts.quick) {
      for (const backend of ['postgres', 'mariadb'] as BackendName[]) {
        const db = await fencingDataSource(backend);
        if (!db) {
          notes.push(`${backend} unavailable: no fencing cell`);
          continue;
        }
        closers.push(db.close);
        fencingDbs.push({ backend, ...db });
      }
    }

    for (const n of [1, 3]) {
      const fresh = async () => {
        const clients = nodes.clients().slice(0, n);
        await nodes.waitReady(clients);
        return clients;
      };
      const p = `${prefix}${n}:`;

      const oursClients = await fresh();
      const ours = new Redlock(oursClients, { prefix: p });
      const oursTry: Op = async () => {
        const lease = await ours.tryAcquire('a', ttl);
        if (!lease) throw new Error('ormlock: not acquired');
        await lease.release();
      };
      const oursUsing: Op = () => ours.using('b', ttl, async () => undefined);
      cases.push(
        { nodes: n, name: 'ormlock tryAcquire+release', op: oursTry, vs: '@sesamecare-oss/redlock acquire+release' },
        { nodes: n, name: 'ormlock using(noop)', op: oursUsing, vs: '@sesamecare-oss/redlock using(noop)' },
      );
      counted.push(
        { nodes: n, name: 'ormlock tryAcquire+release', clients: oursClients, op: oursTry },
        { nodes: n, name: 'ormlock using(noop)', clients: oursClients, op: oursUsing },
      );

      const sesameClients = await fresh();
      const sesame = new SesameRedlock(sesameClients, { retryCount: 0 });
      const sesameTry: Op = async () => {
        const lock = await sesame.acquire([`${p}sesame:a`], ttl);
        await lock.release();
      };
      const sesameUsing: Op = () => sesame.using([`${p}sesame:b`], ttl, async () => undefined);
      // A/A control: a second @sesamecare-oss/redlock on clients of its own, compared with the first
      // like ormlock is (its ratio is what the machine's noise alone gives)
      const againClients = await fresh();
      const again = new SesameRedlock(againClients, { retryCount: 0 });
      const againTry: Op = async () => {
        const lock = await again.acquire([`${p}sesame:c`], ttl);
        await lock.release();
      };
      cases.push(
        { nodes: n, name: '@sesamecare-oss/redlock acquire+release', op: sesameTry },
        { nodes: n, name: '@sesamecare-oss/redlock using(noop)', op: sesameUsing },
        { nodes: n, name: 'A/A: a 2nd @sesamecare-oss/redlock acquire+release', op: againTry, vs: '@sesamecare-oss/redlock acquire+release' },
      );
      counted.push({ nodes: n, name: '@sesamecare-oss/redlock acquire+release', clients: sesameClients, op: sesameTry });

      if (universal) {
        const adapters = (await fresh()).map((c) => new universal!.IoredisAdapter(c));
        const lockA = universal.createRedlock({ adapters, key: `${p}universal:a`, ttl, retryAttempts: 0 });
        const lockB = universal.createRedlock({ adapters, key: `${p}universal:b`, ttl, retryAttempts: 0 });
        cases.push(
          {
            nodes: n,
            name: 'redlock-universal acquire+release',
            op: async () => {
              const handle = await lockA.acquire();
              await lockA.release(handle);
            },
          },
          { nodes: n, name: 'redlock-universal using(noop)', op: () => lockB.using(async () => undefined) },
        );
      }

      for (const db of fencingDbs) {
        const fencedClients = await fresh();
        const fenced = new Redlock(fencedClients, { prefix: p, fencing: { dataSource: db.ds } });
        const op: Op = async () => {
          const lease = await fenced.tryAcquire(`fenced:${db.backend}`, ttl);
          if (!lease) throw new Error('ormlock fenced: not acquired');
          await lease.release();
        };
        cases.push({ nodes: n, name: `ormlock tryAcquire+release, fencing: ${db.backend}`, op, statements: db.statements });
        counted.push({ nodes: n, name: `ormlock tryAcquire+release, fencing: ${db.backend}`, clients: fencedClients, op });
      }
    }

    const measured = await measureAll(cases, ops, rounds);
    const commands = new Map<string, number>();
    for (const c of counted) commands.set(`${c.nodes}|${c.name}`, await commandsPerOp(c.clients, c.op));
    const statements = new Map<string, number>();
    for (const c of cases) if (c.statements) statements.set(`${c.nodes}|${c.name}`, await statementsPerOp(c.statements, c.op));
    const rows: BenchRow[] = cases.map((c, k) => {
      const { perRound: _perRound, ...figures } = measured[k];
      return { nodes: c.nodes, case: c.name, ...figures };
    });
    for (const [k, row] of rows.entries()) {
      const c = cases[k];
      const j = c.vs ? cases.findIndex((x) => x.nodes === c.nodes && x.name === c.vs) : -1;
      if (j >= 0) {
        row.vsSesame = Math.round((row.opsPerSec / rows[j].opsPerSec) * 100) / 100;
        const ratios = roundRatio(measured[k], measured[j]);
        row.vsSesameMedian = ratios.median;
        row.vsSesameLow = ratios.low;
        row.vsSesameHigh = ratios.high;
      }
      const cmd = commands.get(`${row.nodes}|${row.case}`);
      if (cmd !== undefined) row.redisCommands = cmd;
      const st = statements.get(`${row.nodes}|${row.case}`);
      if (st !== undefined) row.statements = st;
    }
    return { rows: rows.sort((a, b) => a.nodes - b.nodes), notes };
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    await nodes.close();
  }
}

export function printRedlockTable(result: { rows: BenchRow[]; notes: string[] }, print: (line?: string) => void = console.log): void {
  const head = ['nodes', 'case', 'ops/s', 'p50 ms', 'p99 ms', 'cpu µs/op', '× sesame', '× sesame (median of rounds) [95 %]', 'Redis cmds/op', 'SQL/op'];
  const rows = result.rows.map((r) => [
    String(r.nodes),
    r.case,
    String(r.opsPerSec),
    r.p50Ms.toFixed(3),
    r.p99Ms.toFixed(3),
    r.cpuUsPerOp.toFixed(1),
    r.vsSesame === undefined ? '' : `${r.vsSesame.toFixed(2)}×`,
    r.vsSesameMedian === undefined ? '' : `${r.vsSesameMedian.toFixed(2)}× [${r.vsSesameLow!.toFixed(2)}, ${r.vsSesameHigh!.toFixed(2)}]`,
    r.redisCommands === undefined ? '' : String(r.redisCommands),
    r.statements === undefined ? '' : String(r.statements),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  print(line(head));
  print(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) print(line(r));
  print("× sesame: ops/s ÷ @sesamecare-oss/redlock's for the same operation and nodes, same run (interleaved chunks);");
  print('(median of rounds): the same ratio within each round, where the two ran next to each other, median over the rounds,');
  print('with a distribution-free 95 % interval; A/A: a second sesame instance against the first, the noise floor of the run.');
  for (const n of result.notes) print(`note: ${n}`);
}

if (require.main === module) {
  const value = (name: string) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : undefined);
  benchRedlock({ quick: process.argv.includes('--quick'), rounds: value('--rounds'), ops: value('--ops') }).then(
    async (result) => {
      printRedlockTable(result);
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
