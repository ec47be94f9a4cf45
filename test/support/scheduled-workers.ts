import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

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
