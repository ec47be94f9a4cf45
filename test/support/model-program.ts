/**
 * Model-based tests of the connection model: generated programs of nested transactions,
 * savepoints (TypeORM's nested `manager.transaction`), advisory locks of both scopes, row locks,
 * time limits, sibling calls and throws, run against a real database. After every step the
 * library's model of each connection it used is compared with the database's truth (PostgreSQL
 * `pg_locks` for the backend pid, MariaDB `IS_USED_LOCK`), and a second worker's try-lock checks
 * mutual exclusion.
 *
 * A program is a flat list of steps; scopes (transaction, lock bodies) stay open until an `end` or
 * `throw` step closes the innermost one (a throw is caught by the enclosing scope, as user code
 * would). Steps that do not apply where they land (an `end` with nothing open) do nothing, so every
 * list is a valid program and fast-check can shrink freely.
 */
import * as fc from 'fast-check';
import type { DataSource } from 'typeorm';
import { LockNotAvailableError, advisoryLockId, currentManager, lock, transaction, withAdvisoryLock } from '../../src';
import { locksOn, poolable } from '../../src/context/connection-model';
import { runInFrame } from '../../src/context/store';
import type { LockDialect } from '../../src/dialects/dialect';
import { EdgeAccount } from '../fixtures/edges';
import type { SuiteEnv } from './suite';

export const KEYS = ['mb-a', 'mb-b'] as const;
export type Key = (typeof KEYS)[number];
/**
 * The advisory key a program's key names: the process id keeps concurrent test processes (the
 * version matrix runs at once; MariaDB's GET_LOCK names are server-wide) off each other's keys.
 */
export const lockKey = (k: Key): string => `${k}:${process.pid}`;

/**
 * One step: `tx` (a transaction — nested: TypeORM's savepoint), `xlock`/`slock` (withAdvisoryLock of
 * transaction/session scope, skipping past its `timeoutMs`), `end`/`throw` (closes the innermost
 * scope), `row` (lock() of the row), `siblings` (two withAdvisoryLock calls at once, the second with
 * a limit), `worker` (another connection tries the key); more kinds come from `extraSteps`.
 */
export interface Step {
  readonly t: string;
  readonly key?: Key;
  readonly timeoutMs?: number;
  readonly secondTimeoutMs?: number;
  readonly [more: string]: unknown;
}

/** Steps other test files add (the lost-connection steps): how to generate one and how to run it in the innermost scope. */
export interface ExtraStep {
  readonly arbitrary: fc.Arbitrary<Step>;
  run(step: Step, world: World): Promise<void>;
}
export const extraSteps = new Map<string, ExtraStep>();

const key = fc.constantFrom(...KEYS);
const limit = fc.constantFrom<number | undefined>(undefined, undefined, 0, 50);

export function stepArbitrary(): fc.Arbitrary<Step> {
  const w = (weight: number, arbitrary: fc.Arbitrary<Step>) => ({ weight, arbitrary });
  return fc.oneof(
    w(3, fc.constant<Step>({ t: 'tx' })),
    w(3, fc.record({ t: fc.constant('xlock'), key, timeoutMs: limit })),
    w(1, fc.record({ t: fc.constant('slock'), key, timeoutMs: limit })),
    w(3, fc.constant<Step>({ t: 'end' })),
    w(2, fc.constant<Step>({ t: 'throw' })),
    w(1, fc.record({ t: fc.constant('row'), timeoutMs: fc.constantFrom<number | undefined>(undefined, 200) })),
    w(1, fc.record({ t: fc.constant('siblings'), key, secondTimeoutMs: fc.constantFrom<0 | 20>(0, 20) })),
    w(1, fc.record({ t: fc.constant('worker'), key })),
    ...[...extraSteps.values()].map((e) => w(1, e.arbitrary)),
  );
}

export function programArbitrary(maxLength = 10): fc.Arbitrary<Step[]> {
  return fc.array(stepArbitrary(), { minLength: 1, maxLength, size: 'max' });
}

/** Runs `numRuns` generated programs from `seed` (fast-check shrinks a failure and throws it); resolves the steps run. */
export async function runPrograms(world: World, seed: number, numRuns: number): Promise<number> {
  let steps = 0;
  await fc.assert(
    fc.asyncProperty(programArbitrary(), async (program) => {
      steps += program.length;
      await runProgram(program, world);
    }),
    { seed, numRuns },
  );
  return steps;
}

/** What a step runs against. */
export interface World {
  readonly ds: DataSource;
  readonly dialect: LockDialect;
  readonly backend: 'postgres' | 'mariadb' | string;
  /** A row to lock (an entity object loaded through `ds`). */
  readonly row: object;
  /** Re-reads `row` on another connection with NOWAIT: true when it is locked. */
  rowLockedElsewhere(): Promise<boolean>;
}

/** The world of a suite (its DataSource has the edge entities): one row to lock, probed from another connection with NOWAIT. */
export async function worldOf(env: SuiteEnv): Promise<World> {
  const repo = env.ds.getRepository(EdgeAccount);
  const row = await repo.save(repo.create({ name: 'model-row', credits: 1 }));
  const probe = repo.create({ id: row.id, name: row.name, credits: row.credits });
  return {
    ds: env.ds,
    dialect: env.handle.dialect,
    backend: env.name,
    row,
    rowLockedElsewhere: () =>
      outside(() => transaction(() => lock(probe, { dataSource: env.ds, onLocked: 'nowait' }), { dataSource: env.ds, propagation: 'requires_new' })).then(
        () => false,
        (e) => {
          if (e instanceof LockNotAvailableError) return true;
          throw e;
        },
      ),
  };
}

class Thrown extends Error {
  constructor() {
    super('thrown by the program');
  }
}

interface Scope {
  readonly step: Step;
  readonly inTx: boolean;
  /** The key this scope's body holds (lock scopes). */
  readonly holds?: Key;
  readonly inbox: Array<(cmd: Command) => void>;
  pending: Command[];
  settled?: Promise<unknown>;
  connection?: object;
}

interface Command {
  readonly step: Step;
  readonly done: (p?: Promise<unknown>, child?: Scope) => void;
}

const outside = <T>(fn: () => Promise<T>) => runInFrame({ txs: new Map(), values: new Map() }, fn);

/** The failure of a program: which step, what differed. */
export class ModelMismatch extends Error {}

/** Runs `program` in `world`; throws ModelMismatch at the first step where the model and the database disagree. */
export async function runProgram(program: readonly Step[], world: World): Promise<void> {
  const stack: Scope[] = [];
  const seen = new Map<object, string>(); // connection → its database id
  const failures: string[] = [];
  const lockIds = new Map<Key, string>(KEYS.map((k) => [k, advisoryLockId(lockKey(k), { dataSource: world.ds })[0]]));

  const send = (scope: Scope, step: Step) =>
    new Promise<{ p?: Promise<unknown>; child?: Scope }>((resolve) => {
      const cmd: Command = { step, done: (p, child) => resolve({ p, child }) };
      const waiter = scope.inbox.shift();
      if (waiter) waiter(cmd);
      else scope.pending.push(cmd);
    });

  const next = (scope: Scope) =>
    new Promise<Command>((resolve) => {
      const cmd = scope.pending.shift();
      if (cmd) resolve(cmd);
      else scope.inbox.push(resolve);
    });

  /** Opens the scope `step` asks for, from the current async context; resolves once its body runs (or the call settled without running it). */
  const open = (step: Step, parentInTx: boolean): { child: Scope; call: Promise<unknown>; started: Promise<void> } => {
    let start!: () => void;
    const started = new Promise<void>((r) => (start = r));
    const holds = step.t === 'xlock' || step.t === 'slock' ? (step.key as Key) : undefined;
    const child: Scope = { step, inTx: parentInTx || step.t === 'tx' || step.t === 'xlock', holds, inbox: [], pending: [] };
    const body = async (connection?: object) => {
      child.connection = connection ?? currentManager(world.ds).queryRunner;
      start();
      await loop(child);
    };
    let call: Promise<unknown>;
    if (step.t === 'tx') call = parentInTx ? currentManager(world.ds).transaction(() => body()) : transaction(() => body(), { dataSource: world.ds });
    else {
      const options = { dataSource: world.ds, timeoutMs: step.timeoutMs as number | undefined, onTimeout: 'skip' as const, ...(step.t === 'slock' ? { scope: 'session' as const } : {}) };
      call = withAdvisoryLock(lockKey(step.key as Key), ({ queryRunner }) => body(queryRunner), options);
    }
    return { child, call, started };
  };

  /** The body of a scope: runs the commands sent to it until `end` or `throw`. */
  const loop = async (scope: Scope): Promise<void> => {
    for (;;) {
      const { step, done } = await next(scope);
      if (step.t === 'end') return done();
      if (step.t === 'throw') {
        done();
        throw new Thrown();
      }
      if (step.t === 'tx' || step.t === 'xlock' || step.t === 'slock') {
        const { child, call, started } = open(step, scope.inTx);
        const settled = call.then(
          () => undefined,
          (e) => (e instanceof Thrown ? undefined : failures.push(`step ${step.t} failed: ${(e as Error).stack ?? e}`)),
        );
        await Promise.race([started, settled]);
        child.settled = settled;
        done(settled, child.connection ? child : undefined);
        await settled;
        continue;
      }
      await immediate(step, scope);
      done();
    }
  };

  const immediate = async (step: Step, scope: Scope): Promise<void> => {
    const extra = extraSteps.get(step.t);
    if (extra) return extra.run(step, world);
    if (step.t === 'row') {
      if (!scope.inTx) return;
      try {
        await lock(world.row, { dataSource: world.ds, timeoutMs: step.timeoutMs as number | undefined });
      } catch (e) {
        failures.push(`row lock failed: ${(e as Error).message}`);
      }
      return;
    }
    if (step.t === 'siblings') {
      const k = step.key as Key;
      const reentrant = stack.some((s) => s.holds === k);
      let inside = 0;
      let overlap = false;
      const body = async () => {
        inside += 1;
        if (inside > 1) overlap = true;
        await sleep(25);
        inside -= 1;
      };
      const started = Date.now();
      const results = await Promise.allSettled([
        withAdvisoryLock(lockKey(k), body, { dataSource: world.ds }),
        sleep(3).then(() => withAdvisoryLock(lockKey(k), body, { dataSource: world.ds, timeoutMs: step.secondTimeoutMs as number, onTimeout: 'skip' })),
      ]);
      for (const r of results) if (r.status === 'rejected') failures.push(`a sibling failed: ${(r.reason as Error).message}`);
      if (overlap && !reentrant) failures.push(`sibling bodies for ${k} overlapped`);
      if (Date.now() - started > 1500) failures.push(`siblings took ${Date.now() - started} ms`);
      return;
    }
    if (step.t === 'worker') return; // checked by the driver, outside any scope
  };

  /** Compares the model with the database for every connection seen, and the worker's view. */
  const check = async (label: string): Promise<void> => {
    // one backend may serve several QueryRunners over time (the pool): the model of a backend is its runners' together
    const byBackend = new Map<string, Set<string>>();
    for (const [conn, id] of seen) {
      const ids = byBackend.get(id) ?? new Set<string>();
      for (const l of locksOn(conn)) if (l.kind === 'advisory') ids.add(l.id);
      byBackend.set(id, ids);
    }
    for (const [id, model] of byBackend) {
      const truth = await heldBy(id);
      for (const k of KEYS) {
        const lockId = lockIds.get(k)!;
        if (model.has(lockId) !== truth.has(lockId)) {
          failures.push(`${label}: model says ${k} ${model.has(lockId) ? 'held' : 'free'} on connection ${id}, the database says ${truth.has(lockId) ? 'held' : 'free'}`);
        }
      }
    }
    if (program.some((s) => s.t === 'row')) {
      const modelRow = [...seen.keys()].some((c) => locksOn(c).some((l) => l.kind === 'row'));
      const truth = await world.rowLockedElsewhere();
      if (modelRow !== truth) failures.push(`${label}: the model says the row is ${modelRow ? 'locked' : 'free'}, another connection finds it ${truth ? 'locked' : 'free'}`);
    }
    if (!stack.length) {
      for (const conn of seen.keys()) if (!poolable(conn)) failures.push(`${label}: a connection back in the pool is not clean per the model`);
    }
  };

  const heldBy = async (id: string): Promise<Set<string>> => {
    if (world.backend === 'postgres') {
      const rows = await outside(() =>
        world.ds.query(
          `SELECT ((classid::bigint << 32) | objid::bigint)::text AS id FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1 AND objsubid = 1`,
          [Number(id)],
        ),
      );
      return new Set(rows.map((r: { id: string }) => r.id));
    }
    const ids = KEYS.map((k) => lockIds.get(k)!);
    const [row] = await outside(() => world.ds.query(`SELECT ${ids.map((_, i) => `IS_USED_LOCK(?) AS k${i}`).join(', ')}`, ids));
    return new Set(ids.filter((_, i) => row[`k${i}`] !== null && String(row[`k${i}`]) === id));
  };

  const root: Scope = { step: { t: 'root' }, inTx: false, inbox: [], pending: [] };
  for (let i = 0; i < program.length; i++) {
    const step = program[i];
    const label = `after step ${i + 1} (${describeStep(step)})`;
    await within(STEP_LIMIT_MS, runStep(step, label), () => `step ${i + 1} (${describeStep(step)}) did not finish within ${STEP_LIMIT_MS} ms; program: ${program.map(describeStep).join(', ')}`);
    if (failures.length) break;
  }

  async function runStep(step: Step, label: string): Promise<void> {
    const top = stack[stack.length - 1];
    if (step.t === 'end' || step.t === 'throw') {
      if (!top) return;
      await send(top, step);
      await top.settled;
      stack.pop();
    } else if (step.t === 'tx' || step.t === 'xlock' || step.t === 'slock') {
      let child: Scope | undefined;
      if (top) ({ child } = await send(top, step));
      else {
        const opened = outside(async () => open(step, false));
        const { child: c, call, started } = await opened;
        const settled = call.then(
          () => undefined,
          (e) => (e instanceof Thrown ? undefined : failures.push(`step ${step.t} failed: ${(e as Error).stack ?? e}`)),
        );
        await Promise.race([started, settled]);
        c.settled = settled;
        child = c.connection ? c : undefined;
      }
      if (child) {
        stack.push(child);
        if (child.connection && !seen.has(child.connection)) seen.set(child.connection, await connectionIdOf(child.connection));
      }
    } else if (step.t === 'worker') {
      const k = step.key as Key;
      const got = await outside(() => withAdvisoryLock(lockKey(k), async () => true, { dataSource: world.ds, timeoutMs: 0, onTimeout: 'skip' })).catch((e: Error) => {
        failures.push(`the worker failed: ${e.message}`);
        return undefined;
      });
      const heldByUs = [...seen.keys()].some((c) => locksOn(c).some((l) => l.kind === 'advisory' && l.id === lockIds.get(k)));
      if ((got === true) === heldByUs) failures.push(`${label}: the worker ${got ? 'took' : 'could not take'} ${k} while the model says it is ${heldByUs ? 'held' : 'free'}`);
    } else if (top) {
      await send(top, step);
    } else if (step.t === 'siblings' || extraSteps.has(step.t)) {
      await outside(() => immediate(step, root));
    }
    await check(label);
  }
  // close whatever is still open, then everything must be free
  while (!failures.length && stack.length) {
    const top = stack.pop()!;
    await send(top, { t: 'end' });
    await top.settled;
  }
  if (!failures.length) await check('at the end');
  if (!failures.length) {
    for (const k of KEYS) {
      const got = await outside(() => withAdvisoryLock(lockKey(k), async () => true, { dataSource: world.ds, timeoutMs: 0, onTimeout: 'skip' }));
      if (got !== true) failures.push(`at the end: ${k} is still held somewhere`);
    }
  }
  if (failures.length) {
    // leave nothing open for the next program
    while (stack.length) {
      const top = stack.pop()!;
      await send(top, { t: 'end' });
      await top.settled;
    }
    throw new ModelMismatch(`${failures.join('\n')}\nprogram: ${program.map(describeStep).join(', ')}`);
  }

  async function connectionIdOf(connection: object): Promise<string> {
    const [row] = await (connection as { query(sql: string): Promise<any[]> }).query(world.dialect.connectionIdSql);
    return String(row.connectionId);
  }
}

export function describeStep(step: Step): string {
  const { t, ...rest } = step;
  const args = Object.entries(rest).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${String(v)}`);
  return args.length ? `${t}(${args.join(' ')})` : t;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The most one step may take (a hang is a failure, never a stuck run). */
const STEP_LIMIT_MS = 10_000;

async function within<T>(ms: number, work: Promise<T>, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new ModelMismatch(message())), ms)));
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
  }
}
