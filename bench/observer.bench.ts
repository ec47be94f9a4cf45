/**
 * What an OpenTelemetry observer costs on the hot path: the `@Pessimistic()` charge (b) on one
 * hot row, with no observer and with `openTelemetry()` over a real SDK (a BasicTracerProvider
 * with a BatchSpanProcessor whose exporter drops the spans, and a MeterProvider with a
 * periodic reader), measured by bench/suite.ts in interleaved rounds (a random order each
 * round) in the same process, next to an A/A control (no observer again).
 * Targets: 0 extra statements per operation, ≤ 3 % fewer ops/s.
 *
 * All three variants run on ONE installation whose `onLockEvent` forwards to the observer the
 * running variant set (none: it returns at once), so the difference is the observer's work.
 *
 * Run: npx ts-node --transpile-only bench/observer.bench.ts [--quick] [--backends postgres,mariadb] [--workers 1,8] [--rounds 100] [--round-ms 250]
 */
import 'reflect-metadata';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { installLocking, type LockEvent, type LockObserver } from '../src';
import { openTelemetry } from '../src/observe/opentelemetry';
import { BACKENDS, teardownBackends, type BackendName } from '../test/support/backends';
import { PESSIMISTIC, type VariantSpec } from './charge-variants';
import { medianWithInterval } from './harness';
import { benchBackend, type SuiteConfig } from './suite';

/** The observer of the variant now running (variants take turns; all workers of a turn set the same one). */
let current: LockObserver | undefined;
const events = new Map<string, number>();
let running = '';
let micro = NaN;

function withObserver(id: string, tag: string, label: string, observer: () => (LockObserver & { flush?(): void }) | undefined): VariantSpec {
  return {
    ...PESSIMISTIC,
    id,
    tag,
    label,
    ref: 'pessimistic',
    twins: undefined,
    prepare: async (env) => {
      const base = await PESSIMISTIC.prepare(env);
      const o = observer();
      return {
        ...base,
        // the observer's last batch of the round is recorded in the round (and counted in it)
        settle: o?.flush ? () => o.flush!() : undefined,
        charge: (rowId) => {
          current = o;
          running = id;
          return base.charge(rowId);
        },
      };
    },
  };
}

/** An exporter that takes the spans and drops them (no network in the measurement). */
const dropSpans: SpanExporter = {
  export: (_spans, done) => done({ code: 0 }),
  shutdown: async () => undefined,
};

/** One hot-row cell (flat, so bench/run.ts prints it as a table). */
export interface ObserverBenchRow {
  backend: BackendName;
  workers: number;
  noneOpsPerSec: number;
  otelOpsPerSec: number;
  /** none ops/s ÷ otel ops/s − 1, in % (positive: the observer is slower), over the whole cell. */
  overheadPct: number;
  /** The same ratio within each round (the variants ran next to each other), median over the rounds, %. */
  overheadMedianPct: number;
  /** A distribution-free 95 % confidence interval of that median, % (order statistics of the rounds). */
  overheadLowPct: number;
  overheadHighPct: number;
  /** The A/A control: no observer against no observer, the same statistic (the machine's noise), %. */
  controlMedianPct: number;
  controlLowPct: number;
  controlHighPct: number;
  rounds: number;
  noneStmtPerOp: number;
  otelStmtPerOp: number;
  noneP50Ms: number;
  otelP50Ms: number;
  noneCpuUsPerOp: number;
  otelCpuUsPerOp: number;
  /** The observer alone, µs of client time per lock (see observerCostUs). */
  observerUsPerLock: number;
}

/**
 * The observer alone, without a database: client time per lock (one `acquired` event, which
 * makes a span and records a wait, plus one `released` with a hold time), µs. Far less noisy
 * than ops/s on a shared machine, and what the ops/s difference is made of.
 */
export function observerCostUs(observer: LockObserver & { flush?(): void }, n = 50_000): number {
  const acquired: LockEvent = { type: 'acquired', kind: 'row', target: 'BenchUser', waitedMs: 2, db: 'postgresql' };
  const released: LockEvent = { type: 'released', kind: 'row', target: 'BenchUser', heldMs: 3, db: 'postgresql' };
  for (let i = 0; i < 5000; i++) {
    observer.onLockEvent(acquired);
    observer.onLockEvent(released);
  }
  observer.flush?.();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    observer.onLockEvent(acquired);
    observer.onLockEvent(released);
  }
  observer.flush?.();
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

export async function benchObserver(
  options: { quick?: boolean; backends?: BackendName[]; workers?: number[]; rounds?: number; roundMs?: number } = {},
): Promise<ObserverBenchRow[]> {
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(dropSpans)] });
  const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.DELTA), exportIntervalMillis: 1000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const otel = openTelemetry({ tracerProvider, meterProvider });
  const specs = [
    withObserver('observer-none', 'b', '@Pessimistic(), no observer', () => undefined),
    // A/A control: the same variant again; its ratio to the first is what the machine's noise alone gives
    withObserver('observer-none-again', "b'", '@Pessimistic(), no observer (A/A control)', () => undefined),
    withObserver('observer-otel', 'b+o', '@Pessimistic() + openTelemetry()', () => otel),
  ];
  // Many short interleaved turns: a burst of load from elsewhere hits both variants alike, and
  // the median of the per-round ratios ignores the rounds it hit one of them harder.
  const rounds = options.rounds ?? (options.quick ? 2 : 100);
  const config: SuiteConfig = {
    durationMs: rounds * (options.roundMs ?? (options.quick ? 100 : 250)),
    rounds,
    cpuSlices: 0,
    cpuSliceMs: 0,
    warmupMs: options.quick ? 50 : 500,
    warmupPasses: 0,
    warmupPassMs: 0,
    workers: options.workers ?? [1, 8],
    distributions: ['hot'],
  };
  const rows: ObserverBenchRow[] = [];
  micro = observerCostUs(otel);
  try {
    for (const backend of options.backends ?? BACKENDS) {
      const record = await benchBackend(backend, specs, config, {
        process: 'ormlock',
        progress: (line) => process.stderr.write(`${line}\n`),
        install: async (ds) => {
          const handle = await installLocking(ds, {
            onLockEvent: (e: LockEvent) => {
              events.set(running, (events.get(running) ?? 0) + 1);
              current?.onLockEvent(e);
            },
          });
          return () => handle.uninstall();
        },
      });
      if (record.skipped) continue;
      const [none, again, withOtel] = specs.map((s) => record.variants.find((v) => v.id === s.id)!);
      for (const workers of config.workers) {
        const a = none.cells.find((c) => c.workers === workers)!;
        const aa = again.cells.find((c) => c.workers === workers)!;
        const b = withOtel.cells.find((c) => c.workers === workers)!;
        const paired = medianWithInterval(a.roundOpsPerSec.map((v, r) => v / b.roundOpsPerSec[r]));
        const control = medianWithInterval(a.roundOpsPerSec.map((v, r) => v / aa.roundOpsPerSec[r]));
        rows.push({
          backend,
          workers,
          noneOpsPerSec: a.opsPerSec,
          otelOpsPerSec: b.opsPerSec,
          overheadPct: (a.opsPerSec / b.opsPerSec - 1) * 100,
          overheadMedianPct: (paired.median - 1) * 100,
          overheadLowPct: (paired.low - 1) * 100,
          overheadHighPct: (paired.high - 1) * 100,
          controlMedianPct: (control.median - 1) * 100,
          controlLowPct: (control.low - 1) * 100,
          controlHighPct: (control.high - 1) * 100,
          rounds: config.rounds,
          noneStmtPerOp: a.stmtPerOp,
          otelStmtPerOp: b.stmtPerOp,
          noneP50Ms: a.p50Ms,
          otelP50Ms: b.p50Ms,
          noneCpuUsPerOp: a.cpuUsPerOp,
          otelCpuUsPerOp: b.cpuUsPerOp,
          observerUsPerLock: micro,
        });
      }
    }
  } finally {
    await meterProvider.shutdown();
    await tracerProvider.shutdown();
  }
  return rows;
}

function interval(median: number, low: number, high: number): string {
  return `${median.toFixed(1)} % [${low.toFixed(1)}, ${high.toFixed(1)}]`;
}

function print(rows: ObserverBenchRow[]): void {
  console.log('hot row, @Pessimistic() charge: no observer vs openTelemetry() (same process, interleaved rounds)');
  console.log('overhead = none ops/s ÷ otel ops/s − 1 within each round (the variants ran next to each other), median over the rounds [95 % interval];');
  console.log("A/A = the same statistic for no observer against no observer: what the machine's noise alone gives.");
  console.log(
    'backend   workers  rounds  none ops/s  otel ops/s  overhead (whole cell)  overhead, median of rounds [95 %]  A/A control [95 %]  stmt/op none  stmt/op otel  p50 none  p50 otel  CPU µs/op none  CPU µs/op otel',
  );
  for (const r of rows) {
    console.log(
      `${r.backend.padEnd(9)} ${String(r.workers).padStart(7)}  ${String(r.rounds).padStart(6)}  ${r.noneOpsPerSec.toFixed(0).padStart(10)}  ${r.otelOpsPerSec.toFixed(0).padStart(10)}` +
        `  ${`${r.overheadPct.toFixed(1)} %`.padStart(21)}  ${interval(r.overheadMedianPct, r.overheadLowPct, r.overheadHighPct).padStart(33)}` +
        `  ${interval(r.controlMedianPct, r.controlLowPct, r.controlHighPct).padStart(18)}  ${r.noneStmtPerOp.toFixed(2).padStart(12)}  ${r.otelStmtPerOp.toFixed(2).padStart(12)}` +
        `  ${r.noneP50Ms.toFixed(2).padStart(8)}  ${r.otelP50Ms.toFixed(2).padStart(8)}` +
        `  ${r.noneCpuUsPerOp.toFixed(0).padStart(14)}  ${r.otelCpuUsPerOp.toFixed(0).padStart(14)}`,
    );
  }
  console.log(`openTelemetry() alone: ${micro.toFixed(2)} µs of client time per lock (acquired with its span + released with its hold time)`);
  console.log(`lock events delivered: ${[...events].map(([k, v]) => `${k || '(setup)'} ${v}`).join(', ')}`);
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const value = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
  benchObserver({
    quick: argv.includes('--quick'),
    backends: value('--backends')?.split(',') as BackendName[] | undefined,
    workers: value('--workers')?.split(',').map(Number),
    rounds: value('--rounds') === undefined ? undefined : Number(value('--rounds')),
    roundMs: value('--round-ms') === undefined ? undefined : Number(value('--round-ms')),
  })
    .then(print)
    .then(() => teardownBackends())
    .then(() => process.exit(0))
    .catch((error) => {
      console.error(error);
      process.exit(2);
    });
}
