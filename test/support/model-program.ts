/**
 * Model-based tests of the connection model: generated programs of nested transactions,
 * savepoints (the ORM's own nested transactions), advisory locks of both scopes, row locks, time
 * limits, sibling calls, throws and killed connections, run against a real database through
 * TypeORM or MikroORM (a `World`, test/support/model-worlds.ts). After every step the library's
 * model of each connection it used is compared with the database's truth (PostgreSQL `pg_locks`
 * for the backend pid, MariaDB `IS_USED_LOCK`), and a second worker's try-lock checks mutual
 * exclusion.
 *
 * A program is a flat list of steps; scopes (transactions, lock bodies) stay open until an `end` or
 * `throw` step closes the innermost one (a throw is caught by the enclosing scope, as user code
 * would). Steps that do not apply where they land (an `end` with nothing open) do nothing, so every
 * list is a valid program and fast-check can shrink freely.
 */
import * as fc from 'fast-check';
import { LockLostError, advisoryLockId, lock, transaction, withAdvisoryLock } from '../../src';
import { knownState, locksOn, physical, poolable } from '../../src/context/connection-model';
import { runInFrame } from '../../src/context/store';
import type { LockDialect } from '../../src/dialects/dialect';
import type { BackendName } from './backends';

export const KEYS = ['mb-a', 'mb-b'] as const;
export type Key = (typeof KEYS)[number];
/**
 * The advisory key a program's key names: the process id keeps concurrent test processes (the
 * version matrix runs at once; MariaDB's GET_LOCK names are server-wide) off each other's keys.
 */
export const lockKey = (k: Key): string => `${k}:${process.pid}`;

/**
 * One step: `tx` (a transaction — nested: the ORM's own nested transaction, a savepoint),
 * `xlock`/`slock` (withAdvisoryLock of transaction/session scope, skipping past its `timeoutMs`),
 * `end`/`throw` (closes the innermost scope), `row` (lock() of the row), `siblings` (two
 * withAdvisoryLock calls at once, the second with a limit), `worker` (another connection tries the
 * key); the world's own scope kinds (`World.scopes`) and the options' extra steps (a killed connection).
 */
export interface Step {
  readonly t: string;
  readonly key?: Key;
  readonly timeoutMs?: number;
  readonly secondTimeoutMs?: number;
  readonly [more: string]: unknown;
}

/** What a step runs against: one ORM instance on one database. */
export interface World {
  readonly orm: 'typeorm' | 'mikro-orm';
  /** What ormlock calls name as `{ dataSource }` by default (the DataSource, the MikroORM instance). */
  readonly target: object;
  readonly dialect: LockDialect;
  readonly backend: BackendName;
  /** A row to lock (an entity loaded through the ORM). */
  readonly row: object;
  /** Re-reads `row` on another connection with NOWAIT: true when it is locked. */
  rowLockedElsewhere(): Promise<boolean>;
  /** The connection (as the model keys it) of the transaction or pinned connection of this async context, for calls naming `target`. */
  connectionHere(target: object): object | undefined;
  /**
   * The ORM's own nested transaction (a savepoint) around `body`, inside the transaction of this
   * context; `body` gets what calls inside name as `{ dataSource }` when that changes (MikroORM: the
   * nested transaction's EntityManager, when `target` was one).
   */
  nested(target: object, body: (inner?: object) => Promise<void>): Promise<unknown>;
  /** Scope kinds of the ORM's own (a user's QueryRunner.startTransaction, em.begin, em.transactional on a fork), opened at the top level only. */
  readonly scopes: Readonly<Record<string, OwnScope>>;
  /** A statement outside any transaction, on a pool connection. */
  queryOutside(sql: string, params?: unknown[]): Promise<any[]>;
  /** Inserts a row marked `note` through the ORM, in this context's transaction (calls naming `target`). */
  write(target: object, note: string): Promise<void>;
  /** Rows marked `note`, counted outside. */
  count(note: string): Promise<number>;
}

/** A scope kind of the ORM's own: runs `body` inside it, giving the target its calls name and the connection it runs on. */
export interface OwnScope {
  readonly weight: number;
  /** True when the scope is a transaction. */
  readonly transactional: boolean;
  open(body: (target: object, connection: object) => Promise<void>): Promise<unknown>;
}

/** A step the driver runs itself (from outside every scope) — the killed connection. */
export interface ExtraStep {
  readonly arbitrary: fc.Arbitrary<Step>;
  /** Runs in the innermost scope's body first (when one is open), as user code there would. */
  inScope?(step: Step, world: World, target: object): Promise<void>;
  /** Then from outside, with the open scopes in hand. */
  drive(step: Step, control: ProgramControl): Promise<void>;
}

/** What an extra step sees of a running program. */
export interface ProgramControl {
  readonly world: World;
  /** The open scopes, outermost first. */
  readonly scopes: readonly OpenScope[];
  /** The database id of a connection the program used. */
  idOf(connection: object): string | undefined;
  fail(message: string): void;
  /** Marks the open scopes from `index` up as expected to fail (their connection is about to be killed). */
  doom(index: number): void;
  /** Ends the open scopes from `index` up (innermost first; `end` to each), resolving each call's outcome, innermost first. */
  closeFrom(index: number, expectFailure: boolean): Promise<Array<{ scope: OpenScope; error?: unknown }>>;
  /** True when the model has `k` held on a connection the program used. */
  modelHolds(k: Key): boolean;
  /** A second worker tries `k` at once (outside): true when it got it. */
  workerTakes(k: Key): Promise<boolean | undefined>;
}

/** One open scope as an extra step sees it. */
export interface OpenScope {
  readonly step: Step;
  readonly inTx: boolean;
  /** The key its body holds (lock scopes). */
  readonly holds?: Key;
  /** What its calls name as `{ dataSource }`. */
  readonly target: object;
  readonly connection?: object;
  /** An ormlock call (transaction(), withAdvisoryLock) rather than the ORM's own. */
  readonly ormlock: boolean;
  /** The call's outcome: its error, or undefined when it resolved (settles with the call). */
  readonly outcome: Promise<{ error?: unknown }>;
}

export interface ProgramOptions {
  /** Steps added to the generated programs, with their weights. */
  readonly extra?: ReadonlyArray<{ weight: number; step: ExtraStep & { name: string } }>;
  readonly maxLength?: number;
}

const key = fc.constantFrom(...KEYS);
const limit = fc.constantFrom<number | undefined>(undefined, undefined, 0, 50);

export function stepArbitrary(world: World, options: ProgramOptions = {}): fc.Arbitrary<Step> {
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
    ...Object.entries(world.scopes).map(([t, s]) => w(s.weight, fc.constant<Step>({ t }))),
    ...(options.extra ?? []).map((e) => w(e.weight, e.step.arbitrary)),
  );
}

export function programArbitrary(world: World, options: ProgramOptions = {}): fc.Arbitrary<Step[]> {
  return fc.array(stepArbitrary(world, options), { minLength: 1, maxLength: options.maxLength ?? 10, size: 'max' });
}

/** Runs `numRuns` generated programs from `seed` (fast-check shrinks a failure and throws it); resolves the programs' and steps' counts. */
export async function runPrograms(
  world: World,
  seed: number,
  numRuns: number,
  options: ProgramOptions = {},
): Promise<{ steps: number; counts: Map<string, number> }> {
  let steps = 0;
  const counts = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(programArbitrary(world, options), async (program) => {
      if (process.env.MODEL_TRACE) console.log(`      program: ${program.map(describeStep).join(', ')}`);
      steps += program.length;
      for (const s of program) counts.set(s.t, (counts.get(s.t) ?? 0) + 1);
      await runProgram(program, world, options);
    }),
    { seed, numRuns },
  );
  return { steps, counts };
}

class Thrown extends Error {
  constructor() {
    super('thrown by the program');
  }
}

interface Scope extends OpenScope {
  readonly inbox: Array<(cmd: Command) => void>;
  readonly pending: Command[];
  settled?: Promise<unknown>;
  connection?: object;
  outcome: Promise<{ error?: unknown }>;
  /** Its call is expected to fail (its connection was killed): a rejection is not a failure by itself. */
  doomed?: boolean;
}

interface Command {
  readonly step: Step;
  readonly done: (p?: Promise<unknown>, child?: Scope) => void;
}

export const outside = <T>(fn: () => Promise<T>) => runInFrame({ txs: new Map(), values: new Map() }, fn);

/** The failure of a program: which step, what differed. */
export class ModelMismatch extends Error {}

const opensScope = (world: World, t: string) => t === 'tx' || t === 'xlock' || t === 'slock' || t in world.scopes;

/** Runs `program` in `world`; throws ModelMismatch at the first step where the model and the database disagree. */
export async function runProgram(program: readonly Step[], world: World, options: ProgramOptions = {}): Promise<void> {
  const stack: Scope[] = [];
  const seen = new Map<object, string>(); // connection → its database id
  const failures: string[] = [];
  const extras = new Map((options.extra ?? []).map((e) => [e.step.name, e.step]));
  const lockIds = new Map<Key, string>(KEYS.map((k) => [k, advisoryLockId(lockKey(k), { dataSource: world.target })[0]]));

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

  /**
   * Opens the scope `step` asks for inside `parent`, from the current async context; resolves once
   * its body runs (or the call settled without running it). Undefined when the step does not apply.
   */
  const open = async (step: Step, parent: Scope): Promise<Scope | undefined> => {
    const own = world.scopes[step.t];
    if (own && parent !== root) return undefined; // the ORM's own scopes open at the top level
    let start!: () => void;
    const started = new Promise<void>((r) => (start = r));
    const holds = step.t === 'xlock' || step.t === 'slock' ? (step.key as Key) : undefined;
    const child: Scope = {
      step,
      inTx: parent.inTx || step.t === 'tx' || step.t === 'xlock' || (own?.transactional ?? false),
      holds,
      target: parent.target,
      ormlock: !own && !(step.t === 'tx' && parent.inTx),
      inbox: [],
      pending: [],
      outcome: undefined as never,
    };
    const body = async (connection?: object, target?: object) => {
      if (target) (child as { target: object }).target = target;
      child.connection = connection ?? world.connectionHere(child.target);
      start();
      await loop(child);
    };
    let call: Promise<unknown>;
    if (own) call = own.open((target, connection) => body(connection, target));
    else if (step.t === 'tx')
      call = parent.inTx ? world.nested(parent.target, (inner) => body(undefined, inner)) : transaction(() => body(), { dataSource: parent.target });
    else {
      const options = {
        dataSource: parent.target,
        timeoutMs: step.timeoutMs as number | undefined,
        onTimeout: 'skip' as const,
        ...(step.t === 'slock' ? { scope: 'session' as const } : {}),
      };
      call = withAdvisoryLock(lockKey(step.key as Key), ({ queryRunner }) => body(queryRunner), options);
    }
    child.outcome = call.then(
      () => ({}),
      (error: unknown) => ({ error }),
    );
    child.settled = child.outcome.then(({ error }) => {
      if (error === undefined || error instanceof Thrown || child.doomed) return;
      failures.push(`step ${step.t} failed: ${(error as Error).stack ?? String(error)}`);
    });
    await Promise.race([started, child.settled]);
    if (!child.connection) return undefined;
    const parentConnection = parent.connection && physical(parent.connection);
    if (parentConnection && physical(child.connection) !== parentConnection) {
      failures.push(`${describeStep(step)} inside ${describeStep(parent.step)} runs on another connection than its transaction's`);
    }
    if (child.inTx && !knownState(child.connection)?.inTransaction)
      failures.push(`${describeStep(step)}: the model does not know the transaction its body runs in`);
    return child;
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
      if (opensScope(world, step.t)) {
        const child = await open(step, scope);
        done(child?.settled, child);
        await child?.settled;
        continue;
      }
      await immediate(step, scope);
      done();
    }
  };

  const immediate = async (step: Step, scope: Scope): Promise<void> => {
    const extra = extras.get(step.t);
    if (extra) return extra.inScope?.(step, world, scope.target);
    if (step.t === 'row') {
      if (!scope.inTx) return;
      try {
        await lock(world.row, { dataSource: scope.target, timeoutMs: step.timeoutMs as number | undefined });
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
        withAdvisoryLock(lockKey(k), body, { dataSource: scope.target }),
        sleep(3).then(() => withAdvisoryLock(lockKey(k), body, { dataSource: scope.target, timeoutMs: step.secondTimeoutMs as number, onTimeout: 'skip' })),
      ]);
      for (const r of results) if (r.status === 'rejected') failures.push(`a sibling failed: ${(r.reason as Error).message}`);
      if (overlap && !reentrant) failures.push(`sibling bodies for ${k} overlapped`);
      if (Date.now() - started > 1500) failures.push(`siblings took ${Date.now() - started} ms`);
      return;
    }
    if (step.t === 'worker') return; // checked by the driver, outside any scope
  };

  const modelHolds = (k: Key) => [...seen.keys()].some((c) => locksOn(c).some((l) => l.kind === 'advisory' && l.id === lockIds.get(k)));
  const workerTakes = (k: Key) =>
    outside(() => withAdvisoryLock(lockKey(k), async () => true, { dataSource: world.target, timeoutMs: 0, onTimeout: 'skip' })).then(
      (got) => got === true,
      (e: Error) => {
        failures.push(`the worker failed: ${e.message}`);
        return undefined;
      },
    );

  /** Compares the model with the database for every connection seen, and the worker's view. */
  const check = async (label: string): Promise<void> => {
    // one backend may serve several connections over time (the pool): the model of a backend is its connections' together
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
          failures.push(
            `${label}: model says ${k} ${model.has(lockId) ? 'held' : 'free'} on connection ${id}, the database says ${truth.has(lockId) ? 'held' : 'free'}`,
          );
        }
      }
    }
    if (program.some((s) => s.t === 'row')) {
      const modelRow = [...seen.keys()].some((c) => locksOn(c).some((l) => l.kind === 'row'));
      const truth = await world.rowLockedElsewhere();
      if (modelRow !== truth)
        failures.push(`${label}: the model says the row is ${modelRow ? 'locked' : 'free'}, another connection finds it ${truth ? 'locked' : 'free'}`);
    }
    for (const s of stack) {
      if (s.inTx && s.connection && !knownState(s.connection)?.inTransaction && !s.doomed)
        failures.push(`${label}: the model lost the transaction of ${describeStep(s.step)}`);
    }
    if (!stack.length) {
      for (const conn of seen.keys()) if (!poolable(conn)) failures.push(`${label}: a connection back in the pool is not clean per the model`);
    }
  };

  const heldBy = async (id: string): Promise<Set<string>> => {
    if (world.backend === 'postgres') {
      const rows = await outside(() =>
        world.queryOutside(
          `SELECT ((classid::bigint << 32) | objid::bigint)::text AS id FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1 AND objsubid = 1`,
          [Number(id)],
        ),
      );
      return new Set(rows.map((r: { id: string }) => r.id));
    }
    const ids = KEYS.map((k) => lockIds.get(k)!);
    const [row] = await outside(() => world.queryOutside(`SELECT ${ids.map((_, i) => `IS_USED_LOCK(?) AS k${i}`).join(', ')}`, ids));
    return new Set(ids.filter((_, i) => row[`k${i}`] !== null && String(row[`k${i}`]) === id));
  };

  const closeFrom = async (index: number, expectFailure: boolean) => {
    const out: Array<{ scope: OpenScope; error?: unknown }> = [];
    while (stack.length > index) {
      const top = stack.pop()!;
      if (expectFailure) top.doomed = true;
      await send(top, { t: 'end' });
      out.push({ scope: top, error: (await top.outcome).error });
      await top.settled;
    }
    return out;
  };

  const control: ProgramControl = {
    world,
    scopes: stack,
    idOf: (connection) => seen.get(connection),
    fail: (message) => failures.push(message),
    closeFrom,
    doom: (index) => stack.slice(index).forEach((s) => (s.doomed = true)),
    modelHolds,
    workerTakes,
  };

  const root: Scope = { step: { t: 'root' }, inTx: false, target: world.target, ormlock: false, inbox: [], pending: [], outcome: Promise.resolve({}) };
  for (let i = 0; i < program.length; i++) {
    const step = program[i];
    const label = `after step ${i + 1} (${describeStep(step)})`;
    await within(
      STEP_LIMIT_MS,
      runStep(step, label),
      () => `step ${i + 1} (${describeStep(step)}) did not finish within ${STEP_LIMIT_MS} ms; program: ${program.map(describeStep).join(', ')}`,
    );
    if (failures.length) break;
  }

  async function runStep(step: Step, label: string): Promise<void> {
    const top = stack[stack.length - 1];
    const extra = extras.get(step.t);
    if (step.t === 'end' || step.t === 'throw') {
      if (!top) return;
      await send(top, step);
      await top.settled;
      stack.pop();
    } else if (opensScope(world, step.t)) {
      let child: Scope | undefined;
      if (top) ({ child } = await send(top, step));
      else child = await outside(() => open(step, root));
      if (child) {
        stack.push(child);
        if (child.connection && !seen.has(child.connection)) seen.set(child.connection, await connectionIdOf(child.connection));
      }
    } else if (step.t === 'worker') {
      const k = step.key as Key;
      const got = await workerTakes(k);
      const heldByUs = modelHolds(k);
      if (got !== undefined && got === heldByUs)
        failures.push(`${label}: the worker ${got ? 'took' : 'could not take'} ${k} while the model says it is ${heldByUs ? 'held' : 'free'}`);
    } else if (extra) {
      if (top && extra.inScope) await send(top, step);
      await extra.drive(step, control);
    } else if (top) {
      await send(top, step);
    } else if (step.t === 'siblings') {
      await outside(() => immediate(step, root));
    }
    await check(label);
  }
  // close whatever is still open, then everything must be free
  if (!failures.length) await closeFrom(0, false);
  if (!failures.length) await check('at the end');
  if (!failures.length) {
    for (const k of KEYS) if ((await workerTakes(k)) !== true) failures.push(`at the end: ${k} is still held somewhere`);
  }
  if (failures.length) {
    // leave nothing open for the next program
    await within(STEP_LIMIT_MS, closeFrom(0, true), () => 'closing the scopes of a failed program hung').catch((e: Error) => failures.push(e.message));
    throw new ModelMismatch(`${failures.join('\n')}\nprogram: ${program.map(describeStep).join(', ')}`);
  }

  async function connectionIdOf(connection: object): Promise<string> {
    const [row] = await (connection as { query(sql: string): Promise<any[]> }).query(world.dialect.connectionIdSql);
    return String(row.connectionId);
  }
}

/** True when `error` is a LockLostError that kept the driver's error as its cause. */
export function isLockLost(error: unknown): boolean {
  return error instanceof LockLostError && (error as { cause?: unknown }).cause !== undefined;
}

export function describeStep(step: Step): string {
  const { t, ...rest } = step;
  const args = Object.entries(rest)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${String(v)}`);
  return args.length ? `${t}(${args.join(' ')})` : t;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The most one step may take (a hang is a failure, never a stuck run). */
const STEP_LIMIT_MS = 10_000;

export async function within<T>(ms: number, work: Promise<T>, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new ModelMismatch(message())), ms)));
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
  }
}
