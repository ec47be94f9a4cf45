import { expect } from 'chai';
import Redis from 'ioredis';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { DataSource } from 'typeorm';
import { Redlock, createScheduledLockTable, installLocking, type LockingHandle } from '../../src';
import { createDataSource, type BackendName } from './backends';
import { redisAnswers } from './redis-answers';
import { redisUrls } from './redis-servers';

const ROOT = path.join(__dirname, '..', '..');

/** One scheduled-worker process (test/fixtures/scheduled-worker.ts) and its JSON-lines channel. */
export interface SchedWorker {
  readonly child: ChildProcess;
  send(command: object): void;
  /** The next message matching `pred` (a message with `error` rejects). */
  next(pred: (m: any) => boolean): Promise<any>;
  readonly exited: Promise<number | null>;
}

export function startSchedWorker(id: number, namespace: string): SchedWorker {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-r', 'reflect-metadata', 'test/fixtures/scheduled-worker.ts'], {
    cwd: ROOT,
    env: { ...process.env, SCHED_WORKER: String(id), SCHED_NAMESPACE: namespace },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const messages: any[] = [];
  const waiters: Array<{ pred: (m: any) => boolean; resolve: (m: any) => void; reject: (e: Error) => void }> = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let msg: any;
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    const w = waiters.find((x) => msg.error || x.pred(msg));
    if (!w) return void messages.push(msg);
    waiters.splice(waiters.indexOf(w), 1);
    if (msg.error) w.reject(new Error(`scheduled worker ${id} failed: ${msg.error}`));
    else w.resolve(msg);
  });
  void exited.then((code) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`scheduled worker ${id} exited with ${code} before answering`));
  });
  return {
    child,
    exited,
    send: (command) => child.stdin!.write(`${JSON.stringify(command)}\n`),
    next: (pred) => {
      const found = messages.find((m) => m.error || pred(m));
      if (found) {
        messages.splice(messages.indexOf(found), 1);
        return found.error ? Promise.reject(new Error(`scheduled worker ${id} failed: ${found.error}`)) : Promise.resolve(found);
      }
      return new Promise((resolve, reject) => waiters.push({ pred, resolve, reject }));
    },
  };
}

export async function stopSchedWorkers(workers: SchedWorker[]): Promise<void> {
  for (const w of workers) {
    if (w.child.exitCode === null && w.child.signalCode === null) {
      w.child.stdin?.end();
      w.child.kill('SIGTERM');
    }
  }
  await Promise.all(workers.map((w) => w.exited));
}

/** SQL that creates the run log every worker writes to. */
export const RUNS_TABLE_SQL = {
  postgres: 'CREATE TABLE IF NOT EXISTS sched_runs (job varchar(100) NOT NULL, tick int NOT NULL, worker int NOT NULL)',
  mariadb: 'CREATE TABLE IF NOT EXISTS sched_runs (job VARCHAR(100) NOT NULL, tick INT NOT NULL, worker INT NOT NULL) ENGINE=InnoDB',
};

/** Where a storage's run log lives: its own database, PostgreSQL's for Redis. */
export type SchedStorage = 'postgres' | 'mariadb' | 'redis';

export interface TickPlan {
  storage: SchedStorage;
  /** Jobs every worker fires at each tick: locked, or the control without the lock. */
  jobs: Array<{ name: string; locked: boolean }>;
  periodMs: number;
  ticks: number;
  lockAtMostFor: number;
  lockAtLeastFor: number;
  jobMs: number;
  /** Per worker (by index); 0 when absent. */
  skewMs?: number[];
  /** When the first tick fires, as every worker's own clock reads it (a skewed worker fires `skew` early in real time): the barrier. */
  startAt: number;
}

/** Has every worker run the plan; resolves what each answered. */
export async function runTicks(workers: SchedWorker[], plan: TickPlan): Promise<Array<{ ran: number; skipped: number }>> {
  workers.forEach((w, i) => w.send({ cmd: 'ticks', ...plan, skewMs: plan.skewMs?.[i] ?? 0 }));
  return Promise.all(workers.map((w) => w.next((m) => m.done)));
}

/** Runs per tick of `job` from the run log: tick → count. */
export async function runsPerTick(query: (sql: string, params: unknown[]) => Promise<any[]>, postgres: boolean, job: string): Promise<Map<number, number>> {
  const rows = await query(`SELECT tick, COUNT(*) AS n FROM sched_runs WHERE job = ${postgres ? '$1' : '?'} GROUP BY tick`, [job]);
  return new Map(rows.map((r: any) => [Number(r.tick), Number(r.n)]));
}

/** The test process's side: an installed DataSource per database with the run log and lock table, a Redlock. */
export interface SchedParent {
  readonly sources: Map<BackendName, DataSource>;
  readonly redlock?: Redlock;
  storageOptions(storage: SchedStorage): { redlock?: Redlock; dataSource?: DataSource };
  runsOf(storage: SchedStorage, job: string): Promise<Map<number, number>>;
  available(storage: SchedStorage): boolean;
  close(): Promise<void>;
}

export async function schedParent(namespace: string): Promise<SchedParent> {
  const sources = new Map<BackendName, DataSource>();
  const handles: LockingHandle[] = [];
  for (const name of ['postgres', 'mariadb'] as BackendName[]) {
    const ds = await createDataSource(name, [], { fresh: false, poolSize: 10 });
    if (!ds) continue;
    handles.push(await installLocking(ds));
    await ds.query('DROP TABLE IF EXISTS sched_runs');
    await ds.query(RUNS_TABLE_SQL[name]);
    await createScheduledLockTable(ds);
    sources.set(name, ds);
  }
  let redis: Redis | undefined;
  let redlock: Redlock | undefined;
  if (await redisAnswers()) {
    redis = new Redis(redisUrls()[0], { maxRetriesPerRequest: 2 });
    redlock = new Redlock([redis], { namespace });
  } else if (process.env.CI) {
    throw new Error('scheduled locks: Redis does not answer and CI is set');
  } else {
    console.warn('\n  !!! SKIPPING the Redis storage of scheduled locks: no Redis answering\n');
  }
  return {
    sources,
    redlock,
    storageOptions: (storage) => (storage === 'redis' ? { redlock } : { dataSource: sources.get(storage) }),
    runsOf: (storage, job) => {
      const db: BackendName = storage === 'redis' ? 'postgres' : storage;
      const ds = sources.get(db)!;
      return runsPerTick((sql, params) => ds.query(sql, params), db === 'postgres', job);
    },
    available: (storage) => (storage === 'redis' ? redlock !== undefined && sources.has('postgres') : sources.has(storage)),
    close: async () => {
      redis?.disconnect();
      for (const h of handles) h.uninstall();
      for (const ds of sources.values()) if (ds.isInitialized) await ds.destroy();
    },
  };
}

/**
 * The workers fire a locked job and its control every 200 ms for `ticks` ticks; asserts each
 * tick of the locked job ran exactly once and every process ran every tick of the control.
 * The guarantee holds while every fire reaches the storage less than lockAtLeastFor (100 ms)
 * late and every run is shorter than that. On an overloaded machine a process can stall for
 * longer; an attempt whose wrong ticks such a stall explains is reported and the scenario runs
 * again (at most 5 times); an unexplained wrong tick fails at once.
 */
export async function ticksRunOnce(workers: SchedWorker[], parent: SchedParent, storage: SchedStorage, ticks: number): Promise<void> {
  const { runsOf } = parent;
  for (let attempt = 1; ; attempt++) {
    const locked = `ticks-${storage}-${Date.now()}`;
    const control = `${locked}-control`;
    const answers = await runTicks(workers, {
      storage,
      jobs: [
        { name: locked, locked: true },
        { name: control, locked: false },
      ],
      periodMs: 200,
      ticks,
      lockAtMostFor: 10_000,
      lockAtLeastFor: 100,
      jobMs: 0,
      startAt: Date.now() + 1_000, // the barrier: every worker has the plan long before (they are running, it is one line on stdin)
    });
    const trace = answers.flatMap((a: any) => a.trace as Array<[number, number, boolean, number, number]>);
    const runs = await runsOf(storage, locked);
    const wrong = [...Array(ticks).keys()].filter((k) => runs.get(k) !== 1);
    // a wrong tick is explained by a stall when a fire of it or of the tick before landed 90 ms or more late, or a run took that long
    const stalled = (k: number) => trace.some(([t, late, , runMs, lockMs]) => (t === k || t === k - 1) && (late + lockMs >= 90 || runMs >= 90));
    if (wrong.length && wrong.every(stalled) && attempt < 5) {
      console.log(
        `    attempt ${attempt}: ticks ${wrong.join(', ')} ran ${wrong.map((k) => runs.get(k) ?? 0).join(', ')} times after fires stalled beyond the tolerance; again`,
      );
      continue;
    }
    const controlRuns = await runsOf(storage, control);
    expect(
      [...runs.keys()].sort((a, b) => a - b),
      JSON.stringify(trace),
    ).to.deep.equal([...Array(ticks).keys()]);
    for (const [tick, n] of runs) expect(n, `tick ${tick}`).to.equal(1);
    // the control: every process runs every tick
    expect([...controlRuns.values()]).to.deep.equal(Array(ticks).fill(workers.length));
    expect(answers.reduce((s, a) => s + a.ran, 0)).to.equal(ticks + ticks * workers.length); // the locked runs + every control run
    return;
  }
}
