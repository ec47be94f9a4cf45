/**
 * `npm run bench` — ormlock's decorators against hand-written TypeORM/SQL on PostgreSQL and
 * MariaDB: "charge a user" (read the user, subtract 1 credit, write it back) with 1, 8 and 32
 * concurrent workers, on one hot row and on 1,000 rows (random row per op). Prints tables and
 * writes bench/results.json.
 *
 *   npx ts-node --transpile-only bench/run.ts [--quick] [--backends postgres,mariadb]
 *        [--cell-ms N] [--no-children] [--no-extras] [--only <tags|ids>] [--cells <dist:workers,…>] [--out file]
 *   npx ts-node --transpile-only bench/run.ts --render [results.json]   (the report of a recorded run again)
 *
 * `--only a,a=,b,hand-advisory,c` measures only those variants (tags or ids, comma-separated;
 * `--only redis`: the Redis-lease cells alone); `--cells spread:1,hot:8` only those cells
 * (distribution `hot` or `spread`, workers). Both are for short before/after runs: keep the
 * A/A control (`a=`) and each decorator's twin in the list, and read ratios within one run.
 *
 * Each cell is time-bounded: 1.5 s per variant, taken in 9 interleaved rounds of ~0.17 s (0.1 s,
 * one round, with --quick; --quick also skips the client-CPU probe). The exit code is
 * non-zero ONLY when a gating round-trip budget (docs/performance.md) is exceeded — never
 * because of timings (a crash, e.g. an unreachable database, exits 2).
 */
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { installLocking } from '../src';
import { BACKENDS, teardownBackends, type BackendName } from '../test/support/backends';
import { ORMLOCK_PROCESS_VARIANTS, applyRuntimeEntityDecorators } from './charge-variants';
import { ROW_COUNT } from './entities';
import { medianWithInterval, processMaxRssMb } from './harness';
import { benchBackend, type BackendRecord, type CellRecord, type Distribution, type SuiteConfig, type VariantRecord } from './suite';
import { RESULT_MARKER, type WorkerConfig, type WorkerLib, type WorkerResult } from './typeorm-transactional-worker';

interface Args {
  quick: boolean;
  /** `--only redis`: only the Redis-lease cells (bench/redlock.bench.ts). */
  only?: 'redis';
  /** `--only <tags|ids>`: only these variants of the ormlock process. */
  variants?: string[];
  /** `--cells hot:1,spread:8`: only these cells. */
  cells?: Array<{ distribution: Distribution; workers: number }>;
  backends: BackendName[];
  cellMs?: number;
  children: boolean;
  extras: boolean;
  /** `--rounds N`: interleaved rounds per cell (default 9, 1 with --quick). */
  rounds?: number;
  /** Where results.json goes (`--out`; default bench/results.json). */
  out: string;
}

function parseArgs(argv: string[]): Args {
  const value = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const backends = (value('--backends')?.split(',') ?? BACKENDS) as BackendName[];
  for (const b of backends) if (!BACKENDS.includes(b)) throw new Error(`--backends: unknown backend '${b}' (${BACKENDS.join(', ')})`);
  const cellMs = value('--cell-ms') === undefined ? undefined : Number(value('--cell-ms'));
  if (cellMs !== undefined && !(cellMs > 0)) throw new Error('--cell-ms must be a positive number');
  const only = value('--only');
  const known = new Set(ORMLOCK_PROCESS_VARIANTS.flatMap((v) => [v.tag, v.id]));
  const variants = only === undefined || only === 'redis' ? undefined : only.split(',');
  for (const v of variants ?? []) if (!known.has(v)) throw new Error(`--only: unknown variant '${v}' (redis, or tags/ids: ${[...known].join(' ')})`);
  const cells = value('--cells')
    ?.split(',')
    .map((c) => {
      const [distribution, workers] = c.split(':');
      if (!DISTRIBUTIONS.includes(distribution as Distribution) || !(Number(workers) > 0)) throw new Error(`--cells: '${c}' is not <hot|spread>:<workers>`);
      return { distribution: distribution as Distribution, workers: Number(workers) };
    });
  return {
    quick: argv.includes('--quick'),
    only: only === 'redis' ? 'redis' : undefined,
    variants,
    cells,
    backends,
    cellMs,
    children: !argv.includes('--no-children') && !variants,
    extras: !argv.includes('--no-extras') && !variants,
    out: value('--out') ?? path.join(__dirname, 'results.json'),
    rounds: value('--rounds') === undefined ? undefined : Number(value('--rounds')),
  };
}

const DISTRIBUTIONS: Distribution[] = ['hot', 'spread'];
const WORKERS = [1, 8, 32];
const DIST_LABEL: Record<Distribution, string> = { hot: '1 hot row', spread: `${ROW_COUNT} rows` };
const DB_LABEL: Record<BackendName, string> = { postgres: 'PostgreSQL', mariadb: 'MariaDB' };
const T0 = Date.now();
const progress = (line: string) => process.stderr.write(line.startsWith('[bench]') ? `${line} (t=${((Date.now() - T0) / 1000).toFixed(1)} s)\n` : `${line}\n`);

async function main(): Promise<number> {
  const renderAt = process.argv.indexOf('--render');
  if (renderAt >= 0) return render(process.argv[renderAt + 1] ?? path.join(__dirname, 'results.json'));
  const args = parseArgs(process.argv.slice(2));
  if (args.only === 'redis') return onlyRedis(args);
  const config: SuiteConfig = {
    durationMs: args.cellMs ?? (args.quick ? 100 : 1500),
    rounds: args.rounds ?? (args.quick ? 1 : 9),
    cpuSlices: args.quick ? 0 : 24,
    cpuSliceMs: 150,
    warmupMs: args.quick ? 50 : 400,
    warmupPasses: args.quick ? 0 : 3,
    warmupPassMs: 150,
    workers: WORKERS,
    distributions: DISTRIBUTIONS,
    cells: args.cells,
  };
  const specs = args.variants
    ? ORMLOCK_PROCESS_VARIANTS.filter((v) => args.variants!.includes(v.tag) || args.variants!.includes(v.id))
    : ORMLOCK_PROCESS_VARIANTS;
  const startedAt = new Date();
  const notes: string[] = [...applyRuntimeEntityDecorators()];

  // 1. ormlock's process: hand-written baselines and decorators side by side.
  const records: BackendRecord[] = [];
  for (const backend of args.backends) {
    progress(`[bench] ${DB_LABEL[backend]}: ormlock process`);
    records.push(
      await benchBackend(backend, specs, config, {
        process: 'ormlock',
        progress,
        install: async (ds) => {
          const handle = await installLocking(ds);
          return () => handle.uninstall();
        },
      }),
    );
  }
  const ormlockMaxRssMb = processMaxRssMb();

  // 2. Child process: typeorm-transactional (patches globally, like ormlock does).
  const children: WorkerResult[] = [];
  if (args.children) {
    for (const lib of ['typeorm-transactional'] as WorkerLib[]) {
      progress(`[bench] child process: ${lib}`);
      try {
        children.push(await runWorker(lib, { ...config, backends: args.backends }));
      } catch (error) {
        notes.push(`child process ${lib} failed: ${(error as Error).message}`);
        progress(`[bench] child process ${lib} failed: ${(error as Error).message}`);
      }
    }
  }
  const allRecords = [...records, ...children.flatMap((c) => c.backends)];

  // 3. Other engineers' benches, when present.
  const extras: Record<string, unknown> = {};
  if (args.extras) {
    extras.redlock = await optionalBench('redlock.bench', 'benchRedlock', args.quick);
    extras.semaphore = await optionalBench('semaphore.bench', 'benchSemaphore', args.quick);
    extras.semaphoreNodeCost = await optionalBench('semaphore-node-cost', 'benchSemaphoreNodeCost', args.quick);
    extras.optimisticRetries = await optionalBench('optimistic-retries', 'benchOptimisticRetries', args.quick);
    extras.observer = await optionalBench('observer.bench', 'benchObserver', args.quick);
  }

  progress('[bench] done measuring');
  const notesOfChildren = children.flatMap((c) => c.notes);
  const results: RecordedRun = {
    startedAt: startedAt.toISOString(),
    node: process.version,
    cpus: require('os').cpus().length,
    quick: args.quick,
    config,
    rows: ROW_COUNT,
    poolSize: 40,
    processes: {
      ormlock: { maxRssMb: ormlockMaxRssMb },
      ...Object.fromEntries(children.map((c) => [c.process, { maxRssMb: c.maxRssMb }])),
    },
    backends: allRecords,
    extras,
    budgetFailures: [],
    notes: [...notes, ...notesOfChildren],
    totalSeconds: (Date.now() - T0) / 1000,
    table: '',
  };
  const { table, budgetFailures, allNotes } = report(results);
  console.log(table);
  results.table = table;
  results.budgetFailures = budgetFailures;
  results.notes = allNotes;
  fs.writeFileSync(
    args.out,
    JSON.stringify(results, (_k, x) => (typeof x === 'bigint' ? String(x) : x), 2),
  );
  console.log(`\nwrote ${path.relative(process.cwd(), args.out)}`);
  return budgetFailures.length ? 1 : 0;
}

/** What a run records in results.json (and docs/performance-run.json). */
interface RecordedRun {
  startedAt: string;
  node: string;
  cpus: number;
  quick: boolean;
  config: SuiteConfig;
  rows: number;
  poolSize: number;
  processes: Record<string, { maxRssMb: number }>;
  backends: BackendRecord[];
  extras: Record<string, unknown>;
  budgetFailures: string[];
  /** The run's notes: its own and its child processes' (the report adds the variants' notes, each once; a recorded run holds them all). */
  notes: string[];
  totalSeconds?: number;
  table: string;
}

/** The printed report of a run, from what it recorded (so a recorded run can be rendered again: --render). */
function report(run: RecordedRun): { table: string; budgetFailures: string[]; allNotes: string[] } {
  const out: string[] = [];
  const print = (line = '') => out.push(line);
  const { config } = run;
  const allRecords = run.backends;
  const records = allRecords.filter((r) => r.process === 'ormlock');
  print(
    `ormlock bench — ${run.startedAt} — Node ${run.node}, ${run.cpus} CPUs` +
      `${run.quick ? ' — QUICK' : ''} — ${(config.durationMs / 1000).toFixed(2)} s per variant and cell` +
      `${config.rounds > 1 ? ` (${config.rounds} interleaved rounds)` : ''}, pool ${run.poolSize}`,
  );
  print('Work per operation: read the user, subtract 1 credit, write it back (one transaction).');
  print('overhead = ref ops/s ÷ ops/s − 1 (positive: slower than the reference); Δp50 = p50 ÷ ref p50 − 1.');
  print("ref: a = hand-written TypeORM row lock (same process); e' = hand-written unlocked transaction (same process).");
  for (const rec of records) printBackendTable(print, rec, allRecords);
  printSummary(print, allRecords);
  const budgetFailures = printBudgets(print, allRecords);
  printCpu(print, allRecords);
  printLockPathCells(print, allRecords);
  printRoundRatios(print, allRecords);
  printTraces(print, allRecords);
  printExtras(print, run.extras);
  const allNotes = [...run.notes];
  for (const r of allRecords) for (const v of r.variants) for (const n of v.notes) allNotes.push(`${DB_LABEL[r.backend]} ${v.tag}: ${n}`);
  if (allNotes.length) {
    print('');
    print('Notes');
    for (const n of [...new Set(allNotes)]) print(`  - ${n}`);
  }
  print('');
  const others = Object.entries(run.processes).filter(([name]) => name !== 'ormlock');
  print(
    `Peak RSS (max resident set, OS): ormlock process ${run.processes.ormlock.maxRssMb.toFixed(0)} MB` +
      others.map(([name, p]) => `, ${name} process ${p.maxRssMb.toFixed(0)} MB`).join('') +
      (run.totalSeconds === undefined ? '.' : `. Total time ${run.totalSeconds.toFixed(1)} s.`),
  );
  if (budgetFailures.length) print(`ROUND-TRIP BUDGET EXCEEDED: ${budgetFailures.join('; ')}`);
  return { table: out.join('\n'), budgetFailures, allNotes: [...new Set(allNotes)] };
}

/**
 * `--render <results.json>`: prints the report of a recorded run again and writes it back into
 * that file (after a change to how the report reads the measurements; nothing is measured).
 */
function render(file: string): number {
  const run = JSON.parse(fs.readFileSync(file, 'utf8')) as RecordedRun;
  run.totalSeconds ??= Number(/Total time ([\d.]+) s\./.exec(run.table)?.[1] ?? NaN);
  if (!Number.isFinite(run.totalSeconds)) delete run.totalSeconds;
  const { table, budgetFailures, allNotes } = report(run);
  console.log(table);
  run.table = table;
  run.budgetFailures = budgetFailures;
  run.notes = allNotes;
  fs.writeFileSync(file, JSON.stringify(run, null, 2));
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
  return budgetFailures.length ? 1 : 0;
}

// ---------------------------------------------------------------------------------------
// Child processes and optional benches
// ---------------------------------------------------------------------------------------

function runWorker(lib: WorkerLib, config: WorkerConfig): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        '-r',
        'reflect-metadata',
        path.join(__dirname, 'typeorm-transactional-worker.ts'),
        '--lib',
        lib,
        '--config',
        JSON.stringify(config),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], env: process.env },
    );
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_MARKER));
      if (code !== 0 || !line) return reject(new Error(`exit code ${code}${line ? '' : ', no result on stdout'}`));
      try {
        resolve(JSON.parse(line.slice(RESULT_MARKER.length)) as WorkerResult);
      } catch (error) {
        reject(error);
      }
    });
  });
}

async function optionalBench(file: string, exportName: string, quick: boolean): Promise<unknown> {
  if (!fs.existsSync(path.join(__dirname, `${file}.ts`))) return { skipped: `bench/${file}.ts does not exist yet` };
  try {
    const mod = require(`./${file}`);
    if (typeof mod[exportName] !== 'function') return { skipped: `bench/${file}.ts does not export ${exportName}` };
    progress(`[bench] ${exportName}`);
    return { results: await mod[exportName]({ quick }) };
  } catch (error) {
    return { failed: (error as Error).message ?? String(error) };
  }
}

/** `npm run bench -- --only redis`: the Redis-lease cells alone, printed as in the full run. */
async function onlyRedis(args: Args): Promise<number> {
  const extras = { redlock: await optionalBench('redlock.bench', 'benchRedlock', args.quick) };
  const out: string[] = [];
  out.push(
    `ormlock bench (--only redis) — ${new Date().toISOString()} — Node ${process.version}, ${require('os').cpus().length} CPUs${args.quick ? ' — QUICK' : ''}`,
  );
  printExtras((line = '') => out.push(line), extras);
  console.log(out.join('\n'));
  return (extras.redlock as { failed?: string }).failed ? 2 : 0;
}

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

type Print = (line?: string) => void;
type Align = 'l' | 'r';
/** A row whose leading cells are columns and whose `message` runs across the rest. */
interface MessageRow {
  cells: string[];
  message: string;
}
type Row = string[] | MessageRow | 'sep';

function table(print: Print, head: string[], rows: Row[], align: Align[]): void {
  const data = rows.filter((r): r is string[] => Array.isArray(r));
  const messages = rows.filter((r): r is MessageRow => typeof r === 'object' && !Array.isArray(r));
  const widths = head.map((h, i) =>
    Math.max(h.length, ...data.map((r) => (r[i] ?? '').length), ...messages.map((m) => (i < m.cells.length ? m.cells[i].length : 0))),
  );
  const cell = (c: string, i: number) => (align[i] === 'l' ? (c ?? '').padEnd(widths[i]) : (c ?? '').padStart(widths[i]));
  const line = (cells: string[]) => cells.map(cell).join('  ').trimEnd();
  print(line(head));
  print(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) {
    if (r === 'sep') print('');
    else if (Array.isArray(r)) print(line(r));
    else print(`${r.cells.map((c, i) => c.padEnd(widths[i])).join('  ')}  ${r.message}`);
  }
}

const num = (v: number | null | undefined, digits = 0) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits));
const pct = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : `${v >= 0 ? '+' : ''}${(v * 100).toFixed(1)}%`);

function findVariant(all: BackendRecord[], backend: BackendName, process: string, id: string): VariantRecord | undefined {
  return all.find((r) => r.backend === backend && r.process === process)?.variants.find((v) => v.id === id);
}

function refCell(all: BackendRecord[], backend: BackendName, v: VariantRecord, c: CellRecord): CellRecord | undefined {
  if (!v.ref) return undefined;
  const ref = findVariant(all, backend, v.process, v.ref);
  return ref?.cells.find((x) => x.distribution === c.distribution && x.workers === c.workers);
}

function overhead(c: CellRecord, ref: CellRecord | undefined): { ops: number; p50: number } {
  if (!ref || !c.ops || !ref.ops) return { ops: NaN, p50: NaN };
  return { ops: ref.opsPerSec / c.opsPerSec - 1, p50: c.p50Ms / ref.p50Ms - 1 };
}

/** The variants of a backend table: the ormlock process's, plus typeorm-transactional's. */
function tableVariants(rec: BackendRecord, all: BackendRecord[]): VariantRecord[] {
  const tt = all.find((r) => r.backend === rec.backend && r.process === 'typeorm-transactional');
  return [
    ...rec.variants,
    ...(tt?.variants.map((v) => ({ ...v, tag: v.id === 'hand-tx' ? "e'tt" : v.tag, label: v.id === 'hand-tx' ? `${v.label} [tt process]` : v.label })) ?? []),
  ];
}

function printBackendTable(print: Print, rec: BackendRecord, all: BackendRecord[]): void {
  print('');
  print(`== ${DB_LABEL[rec.backend]} ==`);
  if (rec.skipped) {
    print(`skipped: ${rec.skipped}`);
    return;
  }
  const head = [
    'rows',
    'wkr',
    'tag',
    'variant',
    'ops/s',
    'p50 ms',
    'p99 ms',
    'overhead',
    'Δp50',
    'cpu µs/op',
    'stmt/op',
    'retries',
    'lost',
    'err',
    'poolQ',
    'RSS MB',
  ];
  const align: Align[] = ['l', 'r', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  const rows: Row[] = [];
  const variants = tableVariants(rec, all);
  for (const distribution of DISTRIBUTIONS) {
    for (const workers of WORKERS) {
      if (rows.length) rows.push('sep');
      for (const v of variants) {
        const first = [DIST_LABEL[distribution], String(workers), v.tag, v.label];
        if (v.status !== 'ok') {
          rows.push({ cells: first, message: v.status === 'n/a' ? 'n/a (not built yet)' : `FAILED: ${v.reason ?? ''}`.slice(0, 100) });
          continue;
        }
        const c = v.cells.find((x) => x.distribution === distribution && x.workers === workers);
        if (!c) continue;
        const ref = refCell(all, rec.backend, v, c);
        const o = overhead(c, ref);
        const lost = v.serializes ? String(c.lost) : `(${c.lost})`;
        rows.push([
          ...first,
          num(c.opsPerSec),
          num(c.p50Ms, 2),
          num(c.p99Ms, 2),
          v.ref ? pct(o.ops) : 'ref',
          v.ref ? pct(o.p50) : 'ref',
          num(c.cpuUsPerOp),
          num(c.stmtPerOp, 2),
          String(c.retries),
          lost,
          c.errors ? String(c.errors) : '0',
          String(c.poolWaitMax),
          num(c.peakRssMb),
        ]);
      }
    }
  }
  table(print, head, rows, align);
  print('lost: decrements missing from the table (must be 0 for locked variants; "(n)" = unlocked, expected on a hot row).');
  print('cpu µs/op: CPU time of this Node process per operation (client-side cost: ORM, driver, decorator).');
  print('poolQ: most requests seen waiting for a pooled connection. RSS MB: max RSS sampled during the cell.');
  const errs = variants.flatMap((v) => v.cells.filter((c) => c.errors).map((c) => `${v.tag} ${c.distribution} w=${c.workers}: ${c.errors}× ${c.firstError}`));
  for (const e of errs) print(`errors: ${e}`);
  const lostLocked = variants.flatMap((v) =>
    v.serializes ? v.cells.filter((c) => c.lost !== 0).map((c) => `${v.tag} ${c.distribution} w=${c.workers}: ${c.lost}`) : [],
  );
  for (const l of lostLocked) print(`WARNING lost updates in a serializing variant: ${l}`);
}

function geomean(values: number[]): number {
  const ok = values.filter((v) => Number.isFinite(v) && v > -1);
  if (!ok.length) return NaN;
  return Math.exp(ok.reduce((s, v) => s + Math.log(1 + v), 0) / ok.length) - 1;
}

const REF_TAG: Record<string, string> = {
  'hand-locked': 'a',
  'hand-locked-aa': 'a=',
  'hand-tx': "e'",
  'hand-advisory': "c'",
  'hand-optimistic': "d'",
  'hand-save': 'd0',
};

/** Geometric-mean overhead of `v` over variant `refId` (same process) across the cells, and the worst cell. */
function overheadOver(all: BackendRecord[], backend: BackendName, v: VariantRecord, refId: string | undefined) {
  const ref = refId ? findVariant(all, backend, v.process, refId) : undefined;
  if (!ref || ref.status !== 'ok') return undefined;
  const pairs = v.cells.map((c) => ({ c, r: ref.cells.find((x) => x.distribution === c.distribution && x.workers === c.workers) }));
  const o = pairs.map(({ c, r }) => overhead(c, r));
  return {
    ops: geomean(o.map((x) => x.ops)),
    worst: Math.max(...o.map((x) => x.ops).filter(Number.isFinite)),
    p50: geomean(o.map((x) => x.p50)),
    p99: geomean(pairs.map(({ c, r }) => (r && c.ops && r.ops ? c.p99Ms / r.p99Ms - 1 : NaN))),
    cpu: geomean(pairs.map(({ c, r }) => (r ? c.cpuUsPerOp / r.cpuUsPerOp - 1 : NaN))),
  };
}

function printSummary(print: Print, all: BackendRecord[]): void {
  print('');
  print('== Summary: overhead = geometric mean over the 6 cells of (ref ops/s ÷ ops/s − 1); worst = worst cell ==');
  print("   'vs ref' compares with the brief's baseline (a, or e' for unlocked); 'vs twin' with hand-written code doing the same locking.");
  const head = ['db', 'tag', 'variant', 'ref', 'vs ref', 'worst', 'Δp50', 'Δp99', 'Δcpu/op', 'twin', 'vs twin', 'Δcpu twin', 'stmt/op', 'retries', 'peak RSS'];
  const align: Align[] = ['l', 'l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'l', 'r', 'r', 'r', 'r', 'r'];
  const rows: Row[] = [];
  for (const rec of all.filter((r) => r.process === 'ormlock')) {
    if (rows.length) rows.push('sep');
    if (rec.skipped) continue;
    for (const v of tableVariants(rec, all)) {
      const first = [DB_LABEL[rec.backend], v.tag, v.label];
      if (v.status !== 'ok') {
        rows.push({ cells: first, message: v.status === 'n/a' ? 'n/a (not built yet)' : `FAILED: ${v.reason ?? ''}`.slice(0, 100) });
        continue;
      }
      const o = overheadOver(all, rec.backend, v, v.ref);
      const twins = (v.twins ?? []).filter((id) => id !== v.ref).map((id) => ({ id, o: overheadOver(all, rec.backend, v, id) }));
      const spo = v.cells.map((c) => c.stmtPerOp).filter(Number.isFinite);
      const lo = Math.min(...spo);
      const hi = Math.max(...spo);
      rows.push([
        ...first,
        v.ref ? (REF_TAG[v.ref] ?? v.ref) : '—',
        v.ref ? pct(o?.ops) : 'ref',
        v.ref ? pct(o?.worst) : '',
        v.ref ? pct(o?.p50) : '',
        v.ref ? pct(o?.p99) : '',
        v.ref ? pct(o?.cpu) : '',
        twins.length ? twins.map((t) => REF_TAG[t.id] ?? t.id).join(' / ') : v.twins?.length ? '= ref' : '',
        twins.map((t) => pct(t.o?.ops)).join(' / '),
        twins.map((t) => pct(t.o?.cpu)).join(' / '),
        spo.length ? (Math.abs(hi - lo) < 0.005 ? hi.toFixed(2) : `${lo.toFixed(2)}–${hi.toFixed(2)}`) : '—',
        String(v.cells.reduce((sum, c) => sum + c.retries, 0)),
        `${num(Math.max(...v.cells.map((c) => c.peakRssMb)))} MB`,
      ]);
    }
  }
  table(print, head, rows, align);
}

function printBudgets(print: Print, all: BackendRecord[]): string[] {
  print('');
  print('== Round trips per operation vs the budget (a lock ≤ 1 statement over the unlocked work; decorators add none) ==');
  const failures: string[] = [];
  const head = ['db', 'process', 'tag', 'variant', 'unlocked work', '+allowed', 'allowed', 'measured', 'verdict'];
  const align: Align[] = ['l', 'l', 'l', 'l', 'r', 'r', 'r', 'r', 'l'];
  const rows: Row[] = [];
  for (const rec of all) {
    if (rec.skipped) continue;
    for (const v of rec.variants) {
      const first = [DB_LABEL[rec.backend], rec.process, v.tag, v.label];
      if (v.status === 'n/a') {
        rows.push({ cells: first, message: 'n/a (not built yet)' });
        continue;
      }
      if (!v.budget) continue;
      const b = v.budget;
      const verdict = b.ok ? 'ok' : b.gating ? 'EXCEEDED' : 'exceeded (not gating)';
      if (!b.ok && b.gating) failures.push(`${DB_LABEL[rec.backend]} ${v.tag} ${v.label}: ${b.measured.toFixed(2)} > ${b.allowed}`);
      rows.push([...first, `${num(b.referenceStatements, 2)} (${b.reference})`, `+${b.extra}`, num(b.allowed, 2), num(b.measured, 2), verdict]);
      if (b.failedAttempt) {
        rows.push([
          '',
          '',
          '',
          '  … a failed attempt (retried)',
          '',
          '',
          num(b.allowed, 2),
          num(b.failedAttempt.measured, 2),
          b.failedAttempt.ok ? 'ok' : 'exceeded (not gating)',
        ]);
      }
    }
  }
  table(print, head, rows, align);
  print('unlocked-update: transaction + findOne + update; unlocked-save: transaction + findOne + save() on an entity with a @VersionColumn.');
  print('measured: worst statements per successful operation over the uncontended trace and the cells (for a retrying');
  print('variant: cells without retries; a failed attempt is reported on its own line and does not gate).');
  return failures;
}

/**
 * The decorator's own CPU over its twin as a share of the twin's wall time per op, slice by slice
 * (slice i of both ran next to each other): the median of the per-slice shares with its
 * distribution-free 95 % interval. The median, not the mean: one slice that met a major GC or a
 * burst of load from elsewhere (twice the CPU of its neighbours, seen on either side of a pair)
 * moves a mean of 16 slices by several per cent, the A/A control's included.
 */
function cpuShare(v: VariantRecord, twin: VariantRecord | undefined): { median: number; lo: number; hi: number; n: number } | undefined {
  const a = v.cpu?.slices;
  const b = twin?.cpu?.slices;
  if (!a || !b) return undefined;
  const shares: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x && y && x.ops && y.ops && Number.isFinite(x.cpuUsPerOp) && Number.isFinite(y.cpuUsPerOp)) shares.push((x.cpuUsPerOp - y.cpuUsPerOp) / y.wallUsPerOp);
  }
  const n = shares.length;
  if (n < 2) return undefined;
  const { median, low, high } = medianWithInterval(shares);
  return { median, lo: low, hi: high, n };
}

function printCpu(print: Print, all: BackendRecord[]): void {
  const withCpu = all.filter((r) => r.variants.some((v) => v.cpu));
  if (!withCpu.length) return;
  print('');
  print('== Client cost per operation, uncontended (1 worker, 1,000 rows, interleaved slices) ==');
  print('   extra = CPU µs/op over the twin (hand-written code doing the same locking; the ref when none);');
  print("   share = extra ÷ the twin's wall time per op: the decorator's own overhead with DB noise factored out;");
  print('   share and 95 % CI = median over the slices of the per-slice share (paired: slice i of both ran back to back), distribution-free interval.');
  print("   a= is the A/A control (the twin against itself): its interval is the noise a decorator's must be read against.");
  const head = ['db', 'process', 'tag', 'variant', 'ops', 'cpu µs/op', 'wall µs/op', 'vs', 'extra µs', 'share', '95 % CI'];
  const align: Align[] = ['l', 'l', 'l', 'l', 'r', 'r', 'r', 'l', 'r', 'r', 'l'];
  const rows: Row[] = [];
  for (const rec of withCpu) {
    if (rows.length) rows.push('sep');
    for (const v of rec.variants) {
      if (!v.cpu) continue;
      const against = v.twins?.length ? v.twins : v.ref ? [v.ref] : [];
      const compare = (vsId: string | undefined) => {
        const twin = vsId ? rec.variants.find((x) => x.id === vsId) : undefined;
        const base = twin?.cpu;
        const extra = base ? v.cpu!.cpuUsPerOp - base.cpuUsPerOp : NaN;
        const ci = cpuShare(v, twin);
        return [
          vsId ? (REF_TAG[vsId] ?? vsId) : '',
          base ? `${extra >= 0 ? '+' : ''}${extra.toFixed(0)}` : '',
          ci ? pct(ci.median) : base ? pct(extra / base.wallUsPerOp) : '',
          ci ? `[${pct(ci.lo)}, ${pct(ci.hi)}]` : '',
        ];
      };
      rows.push([DB_LABEL[rec.backend], rec.process, v.tag, v.label, String(v.cpu.ops), num(v.cpu.cpuUsPerOp), num(v.cpu.wallUsPerOp), ...compare(against[0])]);
      for (const vsId of against.slice(1)) rows.push(['', '', '', '', '', '', '', ...compare(vsId)]);
    }
  }
  table(print, head, rows, align);
}

/**
 * The cells the lock path is judged on: @Pessimistic against hand-written TypeORM
 * findOne({ lock }) + update on the 1-worker and the 1,000-row cells (throughput ratio and
 * statements), @Pessimistic({ timeoutMs })'s statements, @Versioned against the hand-written
 * version loop on the uncontended cell.
 */
function printLockPathCells(print: Print, all: BackendRecord[]): void {
  print('');
  print('== Lock path: @Pessimistic vs hand-written findOne({ lock }) + update; @Versioned vs the hand-written version loop ==');
  print('   × = ops/s ÷ the hand-written ops/s (above 1: faster): median over the interleaved rounds of the ratio within a round, [95 % interval];');
  print(
    '   stmt = statements per operation (decorator / hand-written); trips = queries sent per operation (round trips: a BEGIN sent with the read is one with it).',
  );
  const head = ['db', 'cell', 'b ÷ a', 'stmt b / a', 'trips b / a', 'b2 ÷ a', 'stmt b2', 'trips b2', "d ÷ d'", "stmt d / d'"];
  const align: Align[] = ['l', 'l', 'l', 'l', 'l', 'l', 'r', 'r', 'l', 'l'];
  const rows: Row[] = [];
  for (const rec of all.filter((r) => r.process === 'ormlock' && !r.skipped)) {
    const cellOf = (id: string, distribution: Distribution, workers: number) =>
      rec.variants.find((v) => v.id === id && v.status === 'ok')?.cells.find((c) => c.distribution === distribution && c.workers === workers);
    // the median over the interleaved rounds of the per-round ratio (the two ran next to each other), with its 95 % interval
    const ratio = (x?: CellRecord, y?: CellRecord) => {
      if (!x || !y || !y.opsPerSec) return '—';
      const m = medianWithInterval(x.roundOpsPerSec.map((v, i) => v / y.roundOpsPerSec[i]));
      return x.roundOpsPerSec.length > 2 ? `${num(m.median, 2)}× [${num(m.low, 2)}, ${num(m.high, 2)}]` : `${(x.opsPerSec / y.opsPerSec).toFixed(2)}×`;
    };
    const stmts = (...cells: Array<CellRecord | undefined>) => cells.map((c) => num(c?.stmtPerOp, 2)).join(' / ');
    const trips = (...cells: Array<CellRecord | undefined>) => cells.map((c) => num(c?.sent !== undefined && c.ops ? c.sent / c.ops : NaN, 2)).join(' / ');
    if (rows.length) rows.push('sep');
    for (const distribution of DISTRIBUTIONS) {
      for (const workers of WORKERS) {
        if (workers !== 1 && distribution !== 'spread') continue; // the 1-worker cells and the 1,000-row cells
        const a = cellOf('hand-locked', distribution, workers);
        const b = cellOf('pessimistic', distribution, workers);
        const b2 = cellOf('pessimistic-timeout', distribution, workers);
        const d = cellOf('versioned', distribution, workers);
        const d1 = cellOf('hand-optimistic', distribution, workers);
        rows.push([
          DB_LABEL[rec.backend],
          `${DIST_LABEL[distribution]}, ${workers} wkr`,
          ratio(b, a),
          stmts(b, a),
          trips(b, a),
          ratio(b2, a),
          num(b2?.stmtPerOp, 2),
          trips(b2),
          ratio(d, d1),
          stmts(d, d1),
        ]);
      }
    }
  }
  table(print, head, rows, align);
}

/** The decorator ÷ twin throughput pairs of printRoundRatios (and the A/A control). */
const ROUND_PAIRS: Array<[string, string]> = [
  ['hand-locked-aa', 'hand-locked'],
  ['pessimistic', 'hand-locked'],
  ['pessimistic-timeout', 'hand-locked'],
  ['advisory', 'hand-advisory'],
  ['versioned', 'hand-optimistic'],
  ['transactional', 'hand-tx'],
];

/**
 * ops/s ratios of each decorator over its twin within each interleaved round (where the two ran
 * close in time), median over the rounds with a distribution-free 95 % interval; the A/A row is
 * the noise floor of the run (9 rounds by default).
 */
function printRoundRatios(print: Print, all: BackendRecord[]): void {
  const rows: Row[] = [];
  for (const rec of all.filter((r) => r.process === 'ormlock' && !r.skipped)) {
    const variant = (id: string) => rec.variants.find((v) => v.id === id && v.status === 'ok');
    for (const distribution of DISTRIBUTIONS) {
      for (const workers of WORKERS) {
        for (const [x, y] of ROUND_PAIRS) {
          const cx = variant(x)?.cells.find((c) => c.distribution === distribution && c.workers === workers);
          const cy = variant(y)?.cells.find((c) => c.distribution === distribution && c.workers === workers);
          if (!cx || !cy) continue;
          const ratios = cx.roundOpsPerSec.map((v, i) => v / cy.roundOpsPerSec[i]);
          const m = medianWithInterval(ratios);
          rows.push([
            DB_LABEL[rec.backend],
            `${DIST_LABEL[distribution]}, ${workers} wkr`,
            `${variant(x)!.tag} ÷ ${variant(y)!.tag}`,
            String(ratios.length),
            `${num(m.median, 3)}×`,
            `[${num(m.low, 3)}, ${num(m.high, 3)}]`,
          ]);
        }
      }
    }
  }
  if (!rows.length) return;
  print('');
  print('== Throughput over the twin, per interleaved round (median of the rounds, distribution-free 95 % interval) ==');
  table(print, ['db', 'cell', 'ratio', 'rounds', 'median', '95 % CI'], rows, ['l', 'l', 'l', 'r', 'r', 'l']);
}

/** A short, readable shape of a statement: its verb and the part that matters for locking. */
function shape(sql: string): string {
  const s = sql.replace(/\s+/g, ' ').trim();
  // a locking SELECT that sets and restores its own wait limit (PostgreSQL's bounded read)
  if (/set_config\('lock_timeout'/.test(s) && /\bFOR (NO KEY )?UPDATE|\bFOR (KEY )?SHARE/i.test(s))
    return 'SELECT … FOR UPDATE (lock_timeout set and restored inside)';
  const fn =
    /\b(pg_advisory_xact_lock_shared|pg_advisory_xact_lock|pg_try_advisory_xact_lock|pg_advisory_lock|pg_advisory_unlock|GET_LOCK|RELEASE_LOCK|set_config|current_setting)\b/i.exec(
      s,
    );
  if (fn) return `SELECT ${fn[1]}(…)`;
  const verb = (/^\w+(\s+TRANSACTION)?/i.exec(s)?.[0] ?? s.slice(0, 12)).toUpperCase();
  const lock = /\b(FOR (NO KEY )?UPDATE|FOR (KEY )?SHARE|LOCK IN SHARE MODE)\b(\s+OF\s+\S+)?(\s+(NOWAIT|SKIP LOCKED|WAIT \d+))?/i.exec(s);
  const bits = [verb];
  if (lock) bits.push(lock[0].toUpperCase());
  if (/^UPDATE/i.test(s) && /version/i.test(s.split(/\bWHERE\b/i)[1] ?? '')) bits.push('WHERE … version');
  if (/\bRETURNING\b/i.test(s)) bits.push('RETURNING');
  return bits.join(' … ');
}

function printTraces(print: Print, all: BackendRecord[]): void {
  print('');
  print('== Statements of one uncontended operation ==');
  for (const rec of all.filter((r) => r.process === 'ormlock' && !r.skipped)) {
    print(`${DB_LABEL[rec.backend]}:`);
    for (const [id, p] of Object.entries(rec.probes))
      print(`  ${'ref'.padEnd(4)} ${id.padEnd(50)} ${String(p!.trace.length).padStart(2)}: ${p!.trace.map(shape).join(' | ')}`);
    for (const v of tableVariants(rec, all)) {
      if (v.status !== 'ok') continue;
      print(`  ${v.tag.padEnd(4)} ${v.label.padEnd(50)} ${String(v.trace.length).padStart(2)}: ${v.trace.map(shape).join(' | ')}`);
    }
  }
}

function printExtras(print: Print, extras: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(extras)) {
    print('');
    const titles: Record<string, string> = {
      redlock: 'Redis leases (bench/redlock.bench.ts)',
      semaphore: 'Counting semaphores, permits 3 (bench/semaphore.bench.ts)',
      semaphoreNodeCost: "The Redis semaphore's cost on the node, in instructions (bench/semaphore-node-cost.ts)",
      optimisticRetries: 'Optimistic retries (bench/optimistic-retries.ts)',
      observer: 'OpenTelemetry observer vs none, hot-row @Pessimistic (bench/observer.bench.ts)',
    };
    print(`== ${titles[name] ?? name} ==`);
    const v = value as { skipped?: string; failed?: string; results?: unknown };
    if (v.skipped) print(`skipped: ${v.skipped}`);
    else if (v.failed) print(`failed: ${v.failed}`);
    else if (name === 'redlock') require('./redlock.bench').printRedlockTable(v.results, print);
    else printGeneric(print, v.results);
  }
}

/** Prints an array of flat objects as a fixed-width table, anything else as JSON. */
function printGeneric(print: Print, value: unknown): void {
  const rows = Array.isArray(value) ? value : value && typeof value === 'object' && Array.isArray((value as any).rows) ? (value as any).rows : undefined;
  if (!rows || !rows.length || rows.some((r: unknown) => !r || typeof r !== 'object')) {
    for (const line of JSON.stringify(value, (_k, x) => (typeof x === 'bigint' ? String(x) : x), 2).split('\n')) print(line);
    return;
  }
  const keys = [...new Set(rows.flatMap((r: object) => Object.keys(r)))] as string[];
  const fmt = (x: unknown) =>
    typeof x === 'number' ? (Number.isInteger(x) ? String(x) : x.toFixed(3)) : typeof x === 'object' ? JSON.stringify(x) : String(x ?? '');
  table(
    print,
    keys,
    rows.map((r: Record<string, unknown>) => keys.map((k) => fmt(r[k]))),
    keys.map((k) => (rows.every((r: Record<string, unknown>) => typeof r[k] === 'number') ? 'r' : 'l')),
  );
}

main()
  .then(async (code) => {
    await teardownBackends().catch(() => undefined);
    process.exit(code);
  })
  .catch(async (error) => {
    console.error(error);
    await teardownBackends().catch(() => undefined);
    process.exit(2);
  });
