import { performance } from 'node:perf_hooks';

/**
 * Time-bounded worker pool: `workers` async loops run `op` back to back until the deadline;
 * an operation in flight at the deadline is finished and counted (so the statements it sent
 * are counted too). Latency is recorded per successful operation.
 */

export interface CellOptions {
  /** Concurrent loops. */
  workers: number;
  /** Stop starting operations after this many ms. */
  durationMs: number;
  /** Extra gauges sampled along with RSS (e.g. pool waiters); their maxima are reported. */
  gauges?: Record<string, () => number>;
  /** Sampling period of RSS and gauges (default 10 ms). */
  sampleEveryMs?: number;
}

export interface CellResult {
  ops: number;
  errors: number;
  /** First error seen (message), when there were errors. */
  firstError?: string;
  /** From start until the last loop finished (≥ durationMs). */
  elapsedMs: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
  /** Max RSS sampled during the cell, MB. */
  peakRssMb: number;
  /** Max of each gauge sampled during the cell. */
  gaugeMax: Record<string, number>;
  /** Latency of every successful operation, ms, in completion order (for merging rounds). */
  latencies: number[];
  /** CPU time (user + system) this process spent during the cell, ms: the client-side cost. */
  cpuMs: number;
}

export type Op = (worker: number) => Promise<unknown>;

export async function runCell(op: Op, options: CellOptions): Promise<CellResult> {
  const { workers, durationMs } = options;
  const sampler = new Sampler(options.gauges ?? {}, options.sampleEveryMs ?? 10);
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;

  // Every loop is created before any of them starts (one shared start gate), so the
  // first operations really overlap.
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let deadline = Infinity;
  const loop = async (worker: number) => {
    await gate;
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await op(worker);
        latencies.push(performance.now() - t0);
      } catch (error) {
        errors++;
        firstError ??= describe(error);
      }
    }
  };
  const loops = Array.from({ length: workers }, (_, i) => loop(i));
  sampler.start();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  deadline = started + durationMs;
  open();
  await Promise.all(loops);
  const elapsedMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const { peakRss, gaugeMax } = sampler.stop();

  return {
    ...latencyStats(latencies, elapsedMs),
    errors,
    firstError,
    peakRssMb: peakRss / 2 ** 20,
    gaugeMax,
    latencies,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

/** Throughput and latency figures of a set of operation latencies measured over `elapsedMs`. */
export function latencyStats(latencies: number[], elapsedMs: number) {
  const sorted = Float64Array.from(latencies).sort();
  const sum = latencies.reduce((a, b) => a + b, 0);
  return {
    ops: latencies.length,
    elapsedMs,
    opsPerSec: elapsedMs > 0 ? (latencies.length / elapsedMs) * 1000 : NaN,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    meanMs: latencies.length ? sum / latencies.length : NaN,
    maxMs: sorted.length ? sorted[sorted.length - 1] : NaN,
  };
}

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Runs `op` sequentially until `ms` elapse (JIT, connection pool and plan-cache warm-up). */
export async function warmUp(op: Op, ms: number, workers = 1): Promise<void> {
  if (ms <= 0) return;
  await runCell(op, { workers, durationMs: ms, sampleEveryMs: 1000 });
}

/** Samples RSS and gauges on a timer; also on start and stop so short cells get a value. */
export class Sampler {
  private timer?: NodeJS.Timeout;
  private peakRss = 0;
  private readonly gaugeMax: Record<string, number> = {};

  constructor(
    private readonly gauges: Record<string, () => number>,
    private readonly everyMs: number,
  ) {
    for (const name of Object.keys(gauges)) this.gaugeMax[name] = 0;
  }

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    this.timer.unref();
  }

  stop(): { peakRss: number; gaugeMax: Record<string, number> } {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    return { peakRss: this.peakRss, gaugeMax: { ...this.gaugeMax } };
  }

  private sample(): void {
    this.peakRss = Math.max(this.peakRss, process.memoryUsage.rss());
    for (const [name, read] of Object.entries(this.gauges)) {
      let v = 0;
      try {
        v = read();
      } catch {
        /* a gauge that cannot be read counts as 0 */
      }
      if (Number.isFinite(v)) this.gaugeMax[name] = Math.max(this.gaugeMax[name], v);
    }
  }
}

/** Max resident set size of this process since it started, MB (from the OS). */
export function processMaxRssMb(): number {
  return (process.resourceUsage().maxRSS * 1024) / 2 ** 20;
}

export function describe(error: unknown): string {
  if (error instanceof Error) return `${error.constructor?.name ?? 'Error'}: ${error.message}`.slice(0, 300);
  return String(error).slice(0, 300);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A small, seedable PRNG (mulberry32) so every variant draws the same row sequence per worker. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The median of `values` and a distribution-free 95 % confidence interval for it: the order
 * statistics n/2 ∓ 0.98·√n (the normal approximation of the binomial sign test).
 */
export function medianWithInterval(values: number[]): { median: number; low: number; high: number } {
  const sorted = values.filter(Number.isFinite).sort((x, y) => x - y);
  const n = sorted.length;
  if (!n) return { median: NaN, low: NaN, high: NaN };
  const mid = n >> 1;
  const median = n % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  const spread = 0.98 * Math.sqrt(n);
  const low = sorted[Math.max(0, Math.floor(n / 2 - spread))];
  const high = sorted[Math.min(n - 1, Math.ceil(n / 2 + spread) - 1)];
  return { median, low, high };
}

/** A copy of `items` in a random order drawn from `random` (Fisher–Yates). */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
