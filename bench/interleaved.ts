/**
 * The round loop of the library-against-library benches (bench/redlock.bench.ts,
 * bench/semaphore.bench.ts): every case runs in many short chunks, one chunk per case per round
 * in a new random order each round, so that warm-up, drift and load from elsewhere on the machine
 * hit every case alike. A comparison is the median over the rounds of the ratio of two cases'
 * ops/s within one round (where they ran next to each other in time), with a distribution-free
 * 95 % interval; an A/A case (a second instance of the reference) shows the noise floor.
 * Also: how many Redis commands and SQL statements an operation sends (counted, not assumed).
 */
import { performance } from 'perf_hooks';
import type Redis from 'ioredis';
import type { DataSource } from 'typeorm';
import { createFencingTable, installLocking } from '../src';
import { createDataSource, type BackendName } from '../test/support/backends';
import { medianWithInterval, rng, shuffled } from './harness';

export type Op = () => Promise<unknown>;

export interface Case {
  nodes: number;
  name: string;
  op: Op;
  /** The name of the case (same `nodes`) this one is compared with. */
  vs?: string;
  /** Statements per op, when the case talks to a database. */
  statements?: () => number;
}

export interface Measured {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time of this process per operation, µs (client-side cost). */
  cpuUsPerOp: number;
  /** ops/s of the case in each round. */
  perRound: number[];
}

/** Runs every case `ops` times in `rounds` interleaved chunks (after a warm-up); per-op latencies are pooled. */
export async function measureAll(cases: readonly Case[], ops: number, rounds: number): Promise<Measured[]> {
  for (const c of cases) for (let i = 0; i < 300; i++) await c.op(); // warm-up: script cache, JIT, pools
  const times = cases.map(() => [] as number[]);
  const totals = cases.map(() => 0);
  const cpu = cases.map(() => 0);
  const perRound = cases.map(() => [] as number[]);
  const chunk = Math.ceil(ops / rounds);
  const random = rng(20261201);
  for (let r = 0; r < rounds; r++) {
    // A new random order each round: no case always runs right after another (what a case leaves
    // behind, e.g. late replies or garbage, would otherwise always be paid by the same next case).
    for (const k of shuffled(
      cases.map((_, k) => k),
      random,
    )) {
      const c = cases[k];
      const cpu0 = process.cpuUsage();
      const started = performance.now();
      for (let i = 0; i < chunk; i++) {
        const t0 = performance.now();
        await c.op();
        times[k].push(performance.now() - t0);
      }
      const took = performance.now() - started;
      totals[k] += took;
      perRound[k].push((chunk / took) * 1000);
      const used = process.cpuUsage(cpu0);
      cpu[k] += used.user + used.system;
    }
  }
  return cases.map((_, k) => {
    const sorted = times[k].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
    return {
      opsPerSec: Math.round((sorted.length / totals[k]) * 1000),
      p50Ms: round3(at(0.5)),
      p99Ms: round3(at(0.99)),
      cpuUsPerOp: Math.round((cpu[k] / sorted.length) * 10) / 10,
      perRound: perRound[k],
    };
  });
}

/** The median over the rounds of `a`'s ops/s ÷ `b`'s in the same round, with its 95 % interval (2 decimals). */
export function roundRatio(a: Measured, b: Measured): { median: number; low: number; high: number } {
  const r = medianWithInterval(a.perRound.map((v, i) => v / b.perRound[i]));
  const two = (x: number) => Math.round(x * 100) / 100;
  return { median: two(r.median), low: two(r.low), high: two(r.high) };
}

/** `1.02× [0.97, 1.06]`. */
export function formatRatio(r: { median: number; low: number; high: number }): string {
  return `${r.median.toFixed(2)}× [${r.low.toFixed(2)}, ${r.high.toFixed(2)}]`;
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Counts the commands ioredis sends on these clients while `op` runs `n` times (per op, summed over the nodes). */
export async function commandsPerOp(clients: readonly Redis[], op: Op, n = 50): Promise<number> {
  let sent = 0;
  const originals = clients.map((c) => c.sendCommand);
  clients.forEach((c, i) => {
    c.sendCommand = function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
      sent++;
      return originals[i].apply(this, args);
    } as Redis['sendCommand'];
  });
  try {
    for (let i = 0; i < n; i++) await op();
    await new Promise((r) => setTimeout(r, 20)); // late releases of the node that did not decide
  } finally {
    clients.forEach((c, i) => (c.sendCommand = originals[i]));
  }
  return Math.round((sent / n) * 100) / 100;
}

/** Statements per op of `op`, read from a statement counter. */
export async function statementsPerOp(statements: () => number, op: Op, n = 50): Promise<number> {
  const before = statements();
  for (let i = 0; i < n; i++) await op();
  return Math.round(((statements() - before) / n) * 100) / 100;
}

/** An installed DataSource with the fencing table and sequence, counting the statements it sends. */
export async function fencingDataSource(backend: BackendName): Promise<{ ds: DataSource; statements: () => number; close: () => Promise<void> } | undefined> {
  let count = 0;
  const logger = {
    logQuery: () => void count++,
    logQueryError() {},
    logQuerySlow() {},
    logSchemaBuild() {},
    logMigration() {},
    log() {},
  };
  const ds = await createDataSource(backend, [], { fresh: false, poolSize: 4, logger, logging: true }).catch(() => null);
  if (!ds) return undefined;
  const handle = await installLocking(ds);
  await createFencingTable(ds);
  return {
    ds,
    statements: () => count,
    close: async () => {
      handle.uninstall();
      await ds.destroy();
    },
  };
}
