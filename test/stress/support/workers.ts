/**
 * Starting and talking to stress worker processes (test/stress/fixtures/stress-worker.ts):
 * JSON lines both ways, the same protocol as test/fixtures/advisory-worker.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { BackendName } from '../../support/backends';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SCRIPT = 'test/stress/fixtures/stress-worker.ts';

export interface StressWorker {
  /** Position in its set (which share of a batch it runs). */
  index: number;
  /** Name in PostgreSQL's pg_stat_activity.application_name (ormlock-stress-w<n>, unique in this run). */
  readonly name: string;
  readonly child: ChildProcess;
  /** The process id (known once ready). */
  pid: number;
  /** Database connection ids its pool opened (PostgreSQL backend pids / MariaDB thread ids). */
  readonly conns: number[];
  /** Operations finished in the current batch (from `{progress}` messages). */
  progress: number;
  /** The next message (not consumed before) that satisfies `pred`; rejects if the worker fails or exits first. */
  next(pred: (msg: any) => boolean): Promise<any>;
  send(command: object): void;
  readonly exited: Promise<number | null>;
  /** Called for every `{progress}` message. */
  onProgress?: (n: number) => void;
}

export interface StartOptions {
  poolSize?: number;
  namespace: string;
}

let started = 0;

function startWorker(backend: BackendName, index: number, options: StartOptions): StressWorker {
  const name = `ormlock-stress-w${started++}`;
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-r', 'reflect-metadata', SCRIPT, backend, String(options.poolSize ?? 16)], {
    cwd: ROOT,
    env: { ...process.env, STRESS_NAMESPACE: options.namespace, PGAPPNAME: name },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const messages: any[] = [];
  const waiters: Array<{ pred: (m: any) => boolean; resolve: (m: any) => void; reject: (e: Error) => void }> = [];
  let failure: Error | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const worker: StressWorker = {
    index,
    name,
    child,
    pid: child.pid ?? 0,
    conns: [],
    progress: 0,
    exited,
    send: (command) => {
      if (child.exitCode === null && child.signalCode === null && child.stdin?.writable) child.stdin.write(`${JSON.stringify(command)}\n`);
    },
    next: (pred) => {
      if (failure) return Promise.reject(failure);
      const found = messages.find(pred);
      if (found) {
        messages.splice(messages.indexOf(found), 1);
        return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => waiters.push({ pred, resolve, reject }));
    },
  };
  child.stdin?.on('error', () => undefined); // writing to a killed worker
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let msg: any;
    try {
      msg = JSON.parse(line);
    } catch {
      process.stderr.write(`[${name}] ${line}\n`);
      return;
    }
    if (msg.conn !== undefined) return void worker.conns.push(Number(msg.conn));
    if (msg.progress !== undefined) {
      worker.progress = msg.progress;
      worker.onProgress?.(msg.progress);
      return;
    }
    if (msg.ready) worker.pid = msg.pid;
    if (msg.error) {
      failure = new Error(`${name} failed: ${msg.error}`);
      for (const w of waiters.splice(0)) w.reject(failure);
      return;
    }
    const w = waiters.find((x) => x.pred(msg));
    if (w) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(msg);
    } else {
      messages.push(msg);
    }
  });
  void exited.then((code) => {
    failure ??= new Error(`${name} exited with ${code} before answering`);
    for (const w of waiters.splice(0)) w.reject(failure);
  });
  return worker;
}

/** Starts `n` workers on `backend` and resolves once every one is connected and installed. */
export async function startWorkers(backend: BackendName, n: number, options: StartOptions): Promise<StressWorker[]> {
  const workers = Array.from({ length: n }, (_, i) => startWorker(backend, i, options));
  try {
    await Promise.all(workers.map((w) => w.next((m) => m.ready)));
  } catch (error) {
    killWorkers(workers);
    throw error;
  }
  return workers;
}

/** Asks every live worker to quit; kills any that has not exited within `graceMs`. */
export async function stopWorkers(workers: StressWorker[], graceMs = 15_000): Promise<void> {
  for (const w of workers) w.send({ cmd: 'quit' });
  const timer = setTimeout(() => killWorkers(workers), graceMs);
  await Promise.all(workers.map((w) => w.exited));
  clearTimeout(timer);
}

export function killWorkers(workers: StressWorker[]): void {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
}

export interface BatchResult {
  ok: number;
  failed: number;
  errors: Record<string, number>;
  samples: string[];
  attempts: number;
  perWorker: any[];
}

/**
 * Sends `command` to every worker with one `startAt` a little in the future (the barrier: all
 * processes start their loops at the same instant), and sums their `{done}` answers.
 */
export async function runBatch(workers: StressWorker[], command: object | ((w: StressWorker) => object), leadMs = 300): Promise<BatchResult> {
  const startAt = Date.now() + leadMs;
  const batch = newBatchId();
  for (const w of workers) {
    w.progress = 0;
    w.send({ ...(typeof command === 'function' ? command(w) : command), startAt, batch });
  }
  const done = await Promise.all(workers.map((w) => w.next((m) => m.done && m.batch === batch)));
  return sumResults(done);
}

let batches = 0;
/** A fresh id for a batch of commands: answers carry it back. */
export function newBatchId(): number {
  return ++batches;
}

export function sumResults(done: any[]): BatchResult {
  const result: BatchResult = { ok: 0, failed: 0, errors: {}, samples: [], attempts: 0, perWorker: done };
  for (const d of done) {
    result.ok += d.ok;
    result.failed += d.failed;
    result.attempts += d.attempts ?? 0;
    for (const [k, v] of Object.entries(d.errors as Record<string, number>)) result.errors[k] = (result.errors[k] ?? 0) + v;
    result.samples.push(...d.samples);
  }
  return result;
}

/** Splits `total` operations over `n` workers (the first ones get the remainder). */
export function split(total: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
}
