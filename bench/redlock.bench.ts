/**
 * Redis leases: ormlock's Redlock against @sesamecare-oss/redlock and redlock-universal, on
 * three local nodes (the shared Redis + two started by test/support/redis-servers).
 * Sequential operations, one at a time, so the figures are round-trip latency plus library
 * overhead: `tryAcquire + release` and `using(noop)`.
 *
 * Run: npx ts-node --transpile-only bench/redlock.bench.ts [--quick]
 */
import { performance } from 'perf_hooks';
import type Redis from 'ioredis';
import { Redlock } from '../src/redis/redlock';
import { startRedisNodes } from '../test/support/redis-servers';

export interface BenchResult {
  name: string;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

type Op = () => Promise<unknown>;

interface Case {
  name: string;
  op: Op;
}

/**
 * Runs every case in `rounds` interleaved chunks (A B C … A B C …) so that warm-up, other
 * load on the machine and drift hit all libraries alike; per-op latencies are pooled.
 */
async function measureAll(cases: Case[], ops: number, rounds: number): Promise<BenchResult[]> {
  for (const c of cases) for (let i = 0; i < 200; i++) await c.op(); // warm-up: script cache, JIT
  const times = cases.map(() => [] as number[]);
  const totals = cases.map(() => 0);
  const chunk = Math.ceil(ops / rounds);
  for (let r = 0; r < rounds; r++) {
    for (const [k, c] of cases.entries()) {
      const started = performance.now();
      for (let i = 0; i < chunk; i++) {
        const t0 = performance.now();
        await c.op();
        times[k].push(performance.now() - t0);
      }
      totals[k] += performance.now() - started;
    }
  }
  return cases.map((c, k) => {
    const sorted = times[k].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    return { name: c.name, opsPerSec: Math.round((sorted.length / totals[k]) * 1000), p50Ms: round(at(0.5)), p99Ms: round(at(0.99)) };
  });
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export async function benchRedlock(opts: { quick: boolean }): Promise<BenchResult[]> {
  const ops = opts.quick ? 300 : 3000;
  const ttl = 5000;
  const prefix = `ormlock-bench:${process.pid}:`;
  const nodes = await startRedisNodes((reason) => {
    throw new Error(`redlock bench needs Redis: ${reason}`);
  });
  const cases: Case[] = [];
  try {
    const ready = async (clients: Redis[]) => {
      await nodes.waitReady(clients);
      return clients;
    };

    // ormlock
    const ours = new Redlock(await ready(nodes.clients()), { prefix });
    cases.push(
      {
        name: 'ormlock tryAcquire+release',
        op: async () => {
          const lease = await ours.tryAcquire('bench:a', ttl);
          if (!lease) throw new Error('ormlock: not acquired');
          await lease.release();
        },
      },
      { name: 'ormlock using(noop)', op: () => ours.using('bench:b', ttl, async () => undefined) },
    );

    // @sesamecare-oss/redlock
    const { Redlock: SesameRedlock } = await import('@sesamecare-oss/redlock');
    const sesame = new SesameRedlock(await ready(nodes.clients()), { retryCount: 0 });
    cases.push(
      {
        name: '@sesamecare-oss/redlock acquire+release',
        op: async () => {
          const lock = await sesame.acquire([`${prefix}sesame:a`], ttl);
          await lock.release();
        },
      },
      { name: '@sesamecare-oss/redlock using(noop)', op: () => sesame.using([`${prefix}sesame:b`], ttl, async () => undefined) },
    );

    // redlock-universal (declares engines node >= 22; measured only if it loads here)
    let universal: typeof import('redlock-universal') | undefined;
    try {
      universal = await import('redlock-universal');
    } catch (error) {
      console.warn(`redlock-universal does not load on Node ${process.version}: ${(error as Error).message}`);
    }
    if (universal) {
      const adapters = (await ready(nodes.clients())).map((c) => new universal!.IoredisAdapter(c));
      const lockA = universal.createRedlock({ adapters, key: `${prefix}universal:a`, ttl, retryAttempts: 0 });
      const lockB = universal.createRedlock({ adapters, key: `${prefix}universal:b`, ttl, retryAttempts: 0 });
      cases.push(
        {
          name: 'redlock-universal acquire+release',
          op: async () => {
            const handle = await lockA.acquire();
            await lockA.release(handle);
          },
        },
        { name: 'redlock-universal using(noop)', op: () => lockB.using(async () => undefined) },
      );
    }
    return await measureAll(cases, ops, opts.quick ? 3 : 10);
  } finally {
    await nodes.close();
  }
}

function printTable(results: BenchResult[]): void {
  const rows = results.map((r) => [r.name, String(r.opsPerSec), r.p50Ms.toFixed(3), r.p99Ms.toFixed(3)]);
  const head = ['case', 'ops/s', 'p50 ms', 'p99 ms'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  const find = (name: string) => results.find((r) => r.name === name);
  console.log('');
  for (const [ourCase, theirCase] of [
    ['ormlock tryAcquire+release', '@sesamecare-oss/redlock acquire+release'],
    ['ormlock tryAcquire+release', 'redlock-universal acquire+release'],
    ['ormlock using(noop)', '@sesamecare-oss/redlock using(noop)'],
    ['ormlock using(noop)', 'redlock-universal using(noop)'],
  ]) {
    const a = find(ourCase);
    const b = find(theirCase);
    if (a && b) console.log(`${ourCase} / ${theirCase}: ${(a.opsPerSec / b.opsPerSec).toFixed(2)}× ops/s`);
  }
}

if (require.main === module) {
  benchRedlock({ quick: process.argv.includes('--quick') }).then(printTable, (error) => {
    console.error(error);
    process.exit(1);
  });
}
