/**
 * @Versioned + retryOnConflict under contention, on PostgreSQL and MariaDB.
 *
 *   npx ts-node --transpile-only bench/optimistic-retries.ts [--quick]
 *
 * 1. Contention: 20 workers increment one @Versioned counter (each increment is a fresh
 *    transaction: load, optional gap, +1, save), retried on StaleEntityError. Reported: successes,
 *    total attempts, retries per success, the longest retry chain, whether the count is exact, and
 *    the same code on an unversioned twin (how many increments it loses).
 * 2. Overhead: sequential save() of a loaded object, @Versioned vs the same entity with TypeORM's own
 *    @VersionColumn only vs no version column; statements per save and time per save.
 * Never used as a timed assertion in tests.
 */
import 'reflect-metadata';
import type { DataSource, Repository } from 'typeorm';
import { installLocking, retryOnConflict, type LockingHandle } from '../src';
import { race } from '../src/testing';
import { BareCounter, Counter, PlainCounter } from '../test/fixtures/counter';
import { BACKENDS, createDataSource, teardownBackends, type BackendName } from '../test/support/backends';
import { QueryLog } from '../test/support/query-log';

export interface ContentionFigures {
  backend: BackendName;
  workers: number;
  gapMs: number;
  /** Increments asked for (workers × per worker). */
  increments: number;
  successes: number;
  failures: number;
  attempts: number;
  retries: number;
  retriesPerSuccess: number;
  maxAttemptsOfOneIncrement: number;
  exact: boolean;
  elapsedMs: number;
  incrementsPerSecond: number;
  /** The same code without @Versioned (TypeORM's @VersionColumn only): increments that vanished. */
  unversionedLost: number;
}

export interface OverheadFigures {
  backend: BackendName;
  saves: number;
  statements: { versioned: number; typeormVersionColumn: number; noVersionColumn: number };
  msPerSave: { versioned: number; typeormVersionColumn: number; noVersionColumn: number };
  /** (versioned − TypeORM @VersionColumn) / TypeORM @VersionColumn, in %. */
  overheadVsTypeormPct: number;
  overheadVsNoVersionPct: number;
}

export interface OptimisticBenchFigures {
  contention: ContentionFigures[];
  overhead: OverheadFigures[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

type AnyCounter = Counter | PlainCounter | BareCounter;

async function contention(backend: BackendName, ds: DataSource, workers: number, perWorker: number, gapMs: number): Promise<ContentionFigures> {
  const counters = ds.getRepository(Counter);
  const plain = ds.getRepository(PlainCounter);
  const { id } = await counters.save(counters.create({ value: 0 }));
  const plainRow = await plain.save(plain.create({ value: 0 }));

  const increment = async (repo: Repository<AnyCounter>, rowId: number) => {
    const c = await repo.findOneByOrFail({ id: rowId });
    if (gapMs > 0) await sleep(gapMs);
    c.value += 1;
    await repo.save(c);
  };

  let attempts = 0;
  let successes = 0;
  let maxAttempts = 0;
  const started = performance.now();
  const results = await race(workers, async () => {
    for (let i = 0; i < perWorker; i++) {
      let mine = 0;
      await retryOnConflict(
        async () => {
          attempts += 1;
          mine += 1;
          await increment(counters as Repository<AnyCounter>, id);
        },
        { attempts: 200, backoffMs: 2, maxBackoffMs: 100 },
      );
      successes += 1;
      maxAttempts = Math.max(maxAttempts, mine);
    }
  });
  const elapsedMs = performance.now() - started;
  const failures = results.filter((r) => r.status === 'rejected').length;
  const increments = workers * perWorker;
  const value = (await counters.findOneByOrFail({ id })).value;

  await race(workers, async () => {
    for (let i = 0; i < perWorker; i++) await retryOnConflict(() => increment(plain as Repository<AnyCounter>, plainRow.id));
  });
  const plainValue = (await plain.findOneByOrFail({ id: plainRow.id })).value;

  return {
    backend,
    workers,
    gapMs,
    increments,
    successes,
    failures,
    attempts,
    retries: attempts - successes,
    retriesPerSuccess: round((attempts - successes) / Math.max(1, successes), 2),
    maxAttemptsOfOneIncrement: maxAttempts,
    exact: value === successes && successes === increments,
    elapsedMs: round(elapsedMs, 1),
    incrementsPerSecond: round((value / elapsedMs) * 1000, 1),
    unversionedLost: increments - plainValue,
  };
}

async function overhead(backend: BackendName, ds: DataSource, saves: number): Promise<OverheadFigures> {
  const log = ds.logger as QueryLog;
  const repos = {
    versioned: ds.getRepository(Counter) as Repository<AnyCounter>,
    typeormVersionColumn: ds.getRepository(PlainCounter) as Repository<AnyCounter>,
    noVersionColumn: ds.getRepository(BareCounter) as Repository<AnyCounter>,
  };
  type Kind = keyof typeof repos;
  const kinds = Object.keys(repos) as Kind[];
  const rows = {} as Record<Kind, AnyCounter>;
  for (const k of kinds) rows[k] = await repos[k].findOneByOrFail({ id: (await repos[k].save(repos[k].create({ value: 0 }))).id });

  const statements = {} as Record<Kind, number>;
  for (const k of kinds) {
    rows[k].value += 1;
    log.start();
    await repos[k].save(rows[k]);
    statements[k] = log.stop().length;
  }
  // interleaved rounds, so that drift on the machine affects every kind alike
  const total = { versioned: 0, typeormVersionColumn: 0, noVersionColumn: 0 } as Record<Kind, number>;
  const rounds = 10;
  for (let round = 0; round < rounds; round++) {
    for (const k of round % 2 ? [...kinds].reverse() : kinds) {
      const t = performance.now();
      for (let i = 0; i < saves / rounds; i++) {
        rows[k].value += 1;
        await repos[k].save(rows[k]);
      }
      total[k] += performance.now() - t;
    }
  }
  const ms = Object.fromEntries(kinds.map((k) => [k, round(total[k] / saves, 3)])) as Record<Kind, number>;
  return {
    backend,
    saves,
    statements,
    msPerSave: ms,
    overheadVsTypeormPct: round(((total.versioned - total.typeormVersionColumn) / total.typeormVersionColumn) * 100, 1),
    overheadVsNoVersionPct: round(((total.versioned - total.noVersionColumn) / total.noVersionColumn) * 100, 1),
  };
}

/** Runs both measurements on every reachable backend and returns the figures. */
export async function benchOptimisticRetries({ quick = false, workers = 20 }: { quick?: boolean; workers?: number } = {}): Promise<OptimisticBenchFigures> {
  const figures: OptimisticBenchFigures = { contention: [], overhead: [] };
  for (const backend of BACKENDS) {
    const ds = await createDataSource(backend, [Counter, PlainCounter, BareCounter], { poolSize: workers + 5, logger: new QueryLog(), logging: true });
    if (!ds) continue;
    let handle: LockingHandle | undefined;
    try {
      handle = await installLocking(ds);
      for (const gapMs of quick ? [5] : [0, 5]) {
        figures.contention.push(await contention(backend, ds, workers, quick ? 1 : 5, gapMs));
      }
      figures.overhead.push(await overhead(backend, ds, quick ? 100 : 1000));
    } finally {
      handle?.uninstall();
      await ds.destroy();
    }
  }
  return figures;
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

if (require.main === module) {
  const quick = process.argv.includes('--quick');
  benchOptimisticRetries({ quick })
    .then((figures) => {
      console.log(`@Versioned + retryOnConflict, 20 workers${quick ? ' (quick)' : ''}`);
      console.table(figures.contention);
      console.log('save() of a loaded object: statements and time per save');
      console.table(
        figures.overhead.map((o) => ({
          backend: o.backend,
          saves: o.saves,
          'stmts versioned': o.statements.versioned,
          'stmts @VersionColumn': o.statements.typeormVersionColumn,
          'stmts bare': o.statements.noVersionColumn,
          'ms versioned': o.msPerSave.versioned,
          'ms @VersionColumn': o.msPerSave.typeormVersionColumn,
          'ms bare': o.msPerSave.noVersionColumn,
          'overhead vs @VersionColumn %': o.overheadVsTypeormPct,
          'overhead vs bare %': o.overheadVsNoVersionPct,
        })),
      );
    })
    .catch((error) => {
      console.error(error);
      process.exitCode = 1;
    })
    .finally(() => teardownBackends());
}
