/**
 * Measures a list of variants on one backend: a fresh DataSource (pool 40) with a counting
 * QueryLog, 1,000 seeded rows per table, the budget probes, one traced operation per
 * variant, then every (distribution × workers) cell with all variants back to back, so a
 * decorator and its baseline are measured close in time on this noisy machine.
 * Shared by run.ts (ormlock process) and typeorm-transactional-worker.ts (child processes).
 */
import type { DialectCapabilities } from '../src/dialects/dialect';
import { installationOf } from '../src/installations';
import type { DataSource } from 'typeorm';
import { createDataSource, type BackendName } from '../test/support/backends';
import { QueryLog, statementsOf } from '../test/support/query-log';
import { PROBES, type Budget, type PreparedVariant, type ProbeId, type VariantSpec } from './charge-variants';
import { BENCH_ENTITIES, INITIAL_CREDITS, ROW_COUNT } from './entities';
import { describe, latencyStats, rng, runCell, shuffled, warmUp, type CellResult } from './harness';

export type Distribution = 'hot' | 'spread';
export type ProcessKind = 'ormlock' | 'typeorm-transactional';

export interface SuiteConfig {
  /** Measured time per variant and cell, ms (split into `rounds` turns). */
  durationMs: number;
  rounds: number;
  /**
   * Client-CPU probe after the cells: every variant, 1 worker on the 1,000 rows, in
   * `cpuSlices` interleaved slices of `cpuSliceMs` (0 slices: skipped).
   */
  cpuSlices: number;
  cpuSliceMs: number;
  warmupMs: number;
  /** Passes of the whole-set warm-up before the cells (each variant, in turn, on the hot row and on 1,000 rows). */
  warmupPasses: number;
  /** Milliseconds per variant and distribution in one warm-up pass. */
  warmupPassMs: number;
  workers: number[];
  distributions: Distribution[];
  /** Only these cells (all of distributions × workers when undefined). */
  cells?: Array<{ distribution: Distribution; workers: number }>;
}

export interface CellRecord extends Pick<CellResult, 'ops' | 'errors' | 'firstError' | 'elapsedMs' | 'opsPerSec' | 'p50Ms' | 'p99Ms' | 'meanMs' | 'maxMs'> {
  distribution: Distribution;
  workers: number;
  /** Statements sent during the cell (QueryLog). */
  statements: number;
  /** Queries sent during the cell: round trips (a BEGIN that rode with the next statement is one with it). */
  sent?: number;
  /** Body runs (ops + retries + failed), or ops + errors when the variant does not count. */
  attempts: number;
  retries: number;
  stmtPerOp: number;
  stmtPerAttempt: number;
  /** Successful operations whose decrement is missing from the table (lost updates). */
  lost: number;
  peakRssMb: number;
  /** Most connection requests seen waiting for the pool at once. */
  poolWaitMax: number;
  /** Client CPU (this process, user + system) per successful operation, µs. */
  cpuUsPerOp: number;
  /** ops/s of each interleaved round, in round order (for ratios of variants that ran next to each other). */
  roundOpsPerSec: number[];
}

export interface BudgetVerdict extends Budget {
  referenceStatements: number;
  allowed: number;
  /** Worst statements per successful operation: uncontended trace and every cell (retry-free cells when it retries). */
  measured: number;
  ok: boolean;
  /** When it retries: worst statements of a failed attempt (not gating). */
  failedAttempt?: { measured: number; ok: boolean };
}

export interface VariantRecord {
  id: string;
  tag: string;
  label: string;
  kind: VariantSpec['kind'];
  ref?: string;
  twins?: string[];
  serializes: boolean;
  process: ProcessKind;
  status: 'ok' | 'n/a' | 'failed';
  reason?: string;
  notes: string[];
  /** The statements of one uncontended operation. */
  trace: string[];
  budget?: BudgetVerdict;
  cells: CellRecord[];
  /** Uncontended client cost (see SuiteConfig.cpuSlices). */
  cpu?: { ops: number; cpuUsPerOp: number; wallUsPerOp: number; slices?: CpuSlice[] };
}

/** One interleaved slice of the CPU probe (slice i of every variant ran close in time: pair them). */
export interface CpuSlice {
  ops: number;
  cpuUsPerOp: number;
  wallUsPerOp: number;
}

export interface BackendRecord {
  backend: BackendName;
  process: ProcessKind;
  skipped?: string;
  probes: Partial<Record<ProbeId, { label: string; stmtPerOp: number; trace: string[] }>>;
  variants: VariantRecord[];
}

/** QueryLog that can also just count (no text kept) while a cell runs: statements, and queries sent (round trips). */
class CountingQueryLog extends QueryLog {
  counting = false;
  count = 0;
  sentCount = 0;
  override logQuery(query: string): void {
    if (this.counting) {
      this.count += statementsOf(query).length;
      this.sentCount++;
    }
    super.logQuery(query);
  }
}

export interface SuiteHooks {
  process: ProcessKind;
  /** Called on the initialized DataSource before anything runs; returns its undo. */
  install?(ds: DataSource): Promise<() => void | Promise<void>>;
  /** Progress lines (stderr). */
  progress?(line: string): void;
}

export async function benchBackend(backend: BackendName, specs: VariantSpec[], config: SuiteConfig, hooks: SuiteHooks): Promise<BackendRecord> {
  const say = hooks.progress ?? (() => undefined);
  const record: BackendRecord = { backend, process: hooks.process, probes: {}, variants: [] };
  const log = new CountingQueryLog();
  const ds = await createDataSource(backend, BENCH_ENTITIES, { poolSize: 40, logger: log });
  if (!ds) {
    record.skipped = `${backend} is not reachable`;
    return record;
  }
  let undo: (() => void | Promise<void>) | undefined;
  try {
    undo = await hooks.install?.(ds);
    const ids = await seed(ds);

    // Budget references: the same work without a lock, sequential, uncontended.
    for (const [id, probe] of Object.entries(PROBES) as Array<[ProbeId, (typeof PROBES)[ProbeId]]>) {
      for (let i = 0; i < 3; i++) await probe.run(ds, ids[i]);
      const trace = await traced(log, () => probe.run(ds, ids[0]));
      log.count = 0;
      log.counting = true;
      for (let i = 0; i < 10; i++) await probe.run(ds, ids[i]);
      log.counting = false;
      record.probes[id] = { label: probe.label, stmtPerOp: log.count / 10, trace };
    }

    // Prepare, warm up and trace every available variant.
    const live: Array<{ spec: VariantSpec; prepared: PreparedVariant; rec: VariantRecord }> = [];
    for (const spec of specs) {
      const rec: VariantRecord = {
        id: spec.id,
        tag: spec.tag,
        label: spec.label,
        kind: spec.kind,
        ref: spec.ref,
        twins: spec.twins,
        serializes: spec.serializes,
        process: hooks.process,
        status: 'ok',
        notes: [],
        trace: [],
        cells: [],
      };
      record.variants.push(rec);
      const reason = spec.unavailable?.();
      if (reason) {
        rec.status = 'n/a';
        rec.reason = reason;
        continue;
      }
      try {
        const prepared = await spec.prepare({ ds, backend, ids });
        rec.notes.push(...prepared.notes);
        const pick = spreadPicker(ids, 0);
        await warmUp(() => prepared.charge(pick()), config.warmupMs, 4);
        rec.trace = await traced(log, () => prepared.charge(ids[1]));
        live.push({ spec, prepared, rec });
      } catch (error) {
        rec.status = 'failed';
        rec.reason = describe(error);
        say(`  ${backend} ${spec.tag} ${spec.label}: FAILED to prepare: ${rec.reason}`);
      }
    }

    // A warm-up of the whole set, variants taking turns as in the cells: the first cell measured
    // (the hot row, 1 worker, on the first backend) otherwise pays for the JIT's tiering and
    // deoptimizations as the variants' shapes meet in shared code (TypeORM's and ours), which the
    // cells after it do not (in one run, the same variant's client CPU was 507 µs/op on the hot row
    // and 340 on 1,000 rows on PostgreSQL, while the second backend, MariaDB, showed no such gap).
    for (let pass = 0; pass < config.warmupPasses; pass++) {
      for (const { prepared } of shuffled(live, rng(500 + pass))) {
        await warmUp(() => prepared.charge(ids[0]), config.warmupPassMs);
        const pick = spreadPicker(ids, 900 + pass);
        await warmUp(() => prepared.charge(pick()), config.warmupPassMs);
      }
    }

    say(`[bench] ${backend}: ${live.length} variants ready, measuring`);
    const gauges = { poolWaiters: poolWaiters(ds) };
    let cellIndex = 0;
    for (const distribution of config.distributions) {
      for (const workers of config.workers) {
        if (config.cells && !config.cells.some((c) => c.distribution === distribution && c.workers === workers)) {
          cellIndex++; // the same seeds as in a full run
          continue;
        }
        const acc = new Map(live.map(({ spec }) => [spec.id, newAccumulator()]));
        const roundMs = config.durationMs / config.rounds;
        for (let round = 0; round < config.rounds; round++) {
          // Variants take turns in short rounds, so a burst of load from elsewhere or a GC is
          // spread over all of them.
          // A new (seeded) random order each round, so no variant always runs right after another
          // and pays for what it left behind.
          const order = shuffled(live, rng(1000 * cellIndex + round + 1));
          for (const { spec, prepared } of order) {
            const a = acc.get(spec.id)!;
            const picks = Array.from({ length: workers }, (_, w) =>
              distribution === 'hot' ? () => ids[0] : spreadPicker(ids, 10_000 * cellIndex + 100 * round + w),
            );
            await openConnections(ds, workers);
            const table = ds.getMetadata(spec.entity).tablePath;
            const before = await creditSum(ds, table);
            const attemptsBefore = prepared.attempts?.();
            log.count = 0;
            log.sentCount = 0;
            log.counting = true;
            const r = await runCell((w) => prepared.charge(picks[w]()), { workers, durationMs: roundMs, gauges });
            if (prepared.settle) {
              const cpu0 = process.cpuUsage();
              const t0 = performance.now();
              prepared.settle();
              const cpu = process.cpuUsage(cpu0);
              r.elapsedMs += performance.now() - t0;
              r.cpuMs += (cpu.user + cpu.system) / 1000;
            }
            log.counting = false;
            const after = await creditSum(ds, table);
            a.latencies.push(...r.latencies);
            a.elapsedMs += r.elapsedMs;
            a.errors += r.errors;
            a.firstError ??= r.firstError;
            a.statements += log.count;
            a.sent += log.sentCount;
            a.attempts += attemptsBefore === undefined ? r.ops + r.errors : prepared.attempts!() - attemptsBefore;
            a.lost += r.ops - (before - after);
            a.peakRssMb = Math.max(a.peakRssMb, r.peakRssMb);
            a.poolWaitMax = Math.max(a.poolWaitMax, r.gaugeMax.poolWaiters ?? 0);
            a.cpuMs += r.cpuMs;
            a.roundOpsPerSec.push(r.elapsedMs > 0 ? (r.ops / r.elapsedMs) * 1000 : NaN);
          }
        }
        for (const { spec, rec } of live) {
          const a = acc.get(spec.id)!;
          const stats = latencyStats(a.latencies, a.elapsedMs);
          const cell: CellRecord = {
            distribution,
            workers,
            ...stats,
            errors: a.errors,
            firstError: a.firstError,
            statements: a.statements,
            sent: a.sent,
            attempts: a.attempts,
            retries: Math.max(0, a.attempts - stats.ops - a.errors),
            stmtPerOp: stats.ops ? a.statements / stats.ops : NaN,
            stmtPerAttempt: a.attempts ? a.statements / a.attempts : NaN,
            lost: a.lost,
            peakRssMb: a.peakRssMb,
            poolWaitMax: a.poolWaitMax,
            cpuUsPerOp: stats.ops ? (a.cpuMs * 1000) / stats.ops : NaN,
            roundOpsPerSec: a.roundOpsPerSec,
          };
          rec.cells.push(cell);
          say(
            `  ${backend.padEnd(8)} ${distribution.padEnd(6)} w=${String(workers).padStart(2)} ${spec.tag.padEnd(3)} ` +
              `${cell.opsPerSec.toFixed(0).padStart(6)} ops/s  p50 ${cell.p50Ms.toFixed(2)} ms  ${cell.stmtPerOp.toFixed(2)} stmt/op` +
              (cell.retries ? `  ${cell.retries} retries` : '') +
              (cell.errors ? `  ${cell.errors} errors (${cell.firstError})` : ''),
          );
        }
        cellIndex++;
      }
    }

    if (config.cpuSlices > 0 && live.length) {
      say(`[bench] ${backend}: client CPU per operation (1 worker, ${config.cpuSlices} × ${config.cpuSliceMs} ms per variant)`);
      const acc = new Map(live.map(({ spec }) => [spec.id, { ops: 0, cpuMs: 0, wallMs: 0, slices: [] as CpuSlice[] }]));
      for (let slice = 0; slice < config.cpuSlices; slice++) {
        const order = live.map((_, i) => live[(i + slice) % live.length]);
        for (const { spec, prepared } of order) {
          const pick = spreadPicker(ids, 777_000 + slice);
          const r = await runCell(() => prepared.charge(pick()), { workers: 1, durationMs: config.cpuSliceMs, sampleEveryMs: 1000 });
          const a = acc.get(spec.id)!;
          a.ops += r.ops;
          a.cpuMs += r.cpuMs;
          a.wallMs += r.elapsedMs;
          a.slices[slice] = { ops: r.ops, cpuUsPerOp: r.ops ? (r.cpuMs * 1000) / r.ops : NaN, wallUsPerOp: r.ops ? (r.elapsedMs * 1000) / r.ops : NaN };
        }
      }
      for (const { spec, rec } of live) {
        const a = acc.get(spec.id)!;
        rec.cpu = { ops: a.ops, cpuUsPerOp: a.ops ? (a.cpuMs * 1000) / a.ops : NaN, wallUsPerOp: a.ops ? (a.wallMs * 1000) / a.ops : NaN, slices: a.slices };
      }
    }

    for (const { spec, rec } of live) {
      if (spec.budget) rec.budget = verdict(spec.budget, record.probes[spec.budget.reference]!.stmtPerOp, rec, () => installationOf(ds)!.dialect.capabilities);
    }
  } finally {
    await undo?.();
    await ds.destroy();
  }
  return record;
}

/** 1,000 rows per bench table, all with the same credits; returns the ids (same in every table). */
async function seed(ds: DataSource): Promise<number[]> {
  let ids: number[] | undefined;
  for (const entity of BENCH_ENTITIES) {
    const rows = Array.from({ length: ROW_COUNT }, () => ({ credits: INITIAL_CREDITS }));
    await ds.createQueryBuilder().insert().into(entity).values(rows).execute();
    const found: number[] = (await ds.getRepository(entity).find({ select: { id: true }, order: { id: 'ASC' } })).map((r) => r.id);
    if (found.length !== ROW_COUNT) throw new Error(`seeding ${entity.name}: ${found.length} rows`);
    if (ids && found.some((id, i) => id !== ids![i])) throw new Error(`seeding ${entity.name}: ids differ from the other tables`);
    ids = found;
  }
  return ids!;
}

async function creditSum(ds: DataSource, tablePath: string): Promise<number> {
  const q = ds.driver.escape.bind(ds.driver);
  const [row] = await ds.query(`SELECT COALESCE(SUM(${q('credits')}), 0) AS s FROM ${q(tablePath)}`);
  return Number(row.s);
}

async function traced(log: CountingQueryLog, fn: () => Promise<unknown>): Promise<string[]> {
  log.start();
  try {
    await fn();
    return log.stop().map((q) => q.replace(/\s+/g, ' ').trim());
  } finally {
    log.stop();
  }
}

function spreadPicker(ids: number[], seed: number): () => number {
  const next = rng(seed + 1);
  return () => ids[Math.floor(next() * ids.length)];
}

/** Connection requests waiting for a free pooled connection (pg.Pool / mysql2 pool). */
function poolWaiters(ds: DataSource): () => number {
  const driver = ds.driver as any;
  return () => driver.master?.waitingCount ?? driver.pool?._connectionQueue?.length ?? 0;
}

interface Accumulator {
  latencies: number[];
  elapsedMs: number;
  errors: number;
  firstError?: string;
  statements: number;
  sent: number;
  attempts: number;
  lost: number;
  peakRssMb: number;
  poolWaitMax: number;
  cpuMs: number;
  roundOpsPerSec: number[];
}

function newAccumulator(): Accumulator {
  return { latencies: [], elapsedMs: 0, errors: 0, statements: 0, sent: 0, attempts: 0, lost: 0, peakRssMb: 0, poolWaitMax: 0, cpuMs: 0, roundOpsPerSec: [] };
}

function verdict(budget: Budget, reference: number, rec: VariantRecord, caps: () => DialectCapabilities): BudgetVerdict {
  const extra = typeof budget.extra === 'function' ? budget.extra(caps()) : budget.extra;
  const allowed = reference + extra;
  const within = (x: number) => x <= allowed + 1e-9;
  // The uncontended trace counts too (a variant whose every cell failed still gets a verdict).
  const clean = rec.cells.filter((c) => !budget.retries || (c.retries === 0 && c.errors === 0));
  const measured = Math.max(rec.trace.length, ...clean.map((c) => c.stmtPerOp).filter(Number.isFinite));
  const result: BudgetVerdict = { ...budget, extra, referenceStatements: reference, allowed, measured, ok: within(measured) };
  if (budget.retries) {
    // Statements beyond the successful operations' share, per failed attempt.
    const perFailed = rec.cells.filter((c) => c.retries + c.errors > 0).map((c) => (c.statements - c.ops * measured) / (c.retries + c.errors));
    if (perFailed.length) {
      const worst = Math.max(...perFailed);
      result.failedAttempt = { measured: worst, ok: within(worst) };
    }
  }
  return result;
}

/** Makes the pool hold `n` open connections, so no measured round pays for connecting. */
async function openConnections(ds: DataSource, n: number): Promise<void> {
  const runners = Array.from({ length: n }, () => ds.createQueryRunner());
  try {
    await Promise.all(runners.map((r) => r.connect()));
  } finally {
    await Promise.all(runners.map((r) => r.release()));
  }
}
