/**
 * Bad input: every public function and decorator rejects bad arguments — null
 * or wrongly typed options, missing or wrong callbacks, unknown options — with a LockConfigError
 * that names the argument, before anything is sent to the database. Standard (TC39) decorators
 * (tsx / esbuild without `experimentalDecorators`) are recognised and the message says so.
 *
 * One table: each API gets the generic bad options and bad callbacks, plus its own cases; every
 * row is named `api: input`. The database rows run on PostgreSQL and on MariaDB.
 */
import { expect } from 'chai';
import Redis from 'ioredis';
import type { DataSource } from 'typeorm';
import {
  AdvisoryLock,
  AroundCreate,
  Current,
  DistributedLock,
  LockConfigError,
  LockedTree,
  lockedTree,
  Pessimistic,
  Redlock,
  RetryOnConflict,
  Transactional,
  Versioned,
  addAroundCreate,
  advisoryLockExists,
  createOrFind,
  defineCurrent,
  installLocking,
  lock,
  lockParent,
  retryOnConflict,
  transaction,
  versioned,
  withAdvisoryLock,
  withAdvisoryLocks,
  withDistributedLock,
  withLock,
  withPessimistic,
} from '../src';
import { EDGE_ENTITIES, EdgeAccount, EdgeMember } from './fixtures/edges';
import { createDataSource } from './support/backends';
import { describeEachBackend, type SuiteEnv } from './support/suite';
import { clientFor, redisUrls } from './support/redis-servers';

interface Row {
  /** Run inside a transaction opened before the statements are recorded (for lock()). */
  inTransaction?: boolean;
  api: string;
  input: string;
  /** What the message must contain: the argument's name. */
  names: string | RegExp;
  run: () => unknown;
}

const BAD_OPTIONS: Array<[string, unknown]> = [
  ['options null', null],
  ["options a string ('fast')", 'fast'],
  ['options a number (5)', 5],
  ['options true', true],
  ['options an array', []],
  ['options a function', () => ({})],
  ['options a Symbol', Symbol('opts')],
  ['options a Promise (a forgotten await)', Promise.resolve({})],
];
const BAD_CALLBACKS: Array<[string, unknown]> = [
  ['callback undefined', undefined],
  ['callback null', null],
  ["callback a string ('SELECT 1')", 'SELECT 1'],
  ['callback a number', 1],
  ['callback an object', {}],
  ['callback an array', []],
  ['callback a Promise (called instead of passed)', Promise.resolve()],
];

const noop = async () => undefined;

/** The generic rows of an API that takes `options` (and a callback, when `withFn` is given). */
function generic(api: string, call: (options: any, fn: any) => unknown, fnName: string | RegExp | undefined, extra: Row[] = []): Row[] {
  const rows: Row[] = BAD_OPTIONS.map(([input, value]) => ({ api, input, names: 'options', run: () => call(value, noop) }));
  if (fnName !== undefined) rows.push(...BAD_CALLBACKS.map(([input, value]) => ({ api, input, names: fnName, run: () => call(undefined, value) })));
  return [...rows, ...extra];
}

/** Asserts a LockConfigError naming the argument, thrown or rejected. */
async function expectConfigError(row: Row): Promise<void> {
  let error: unknown;
  try {
    await row.run();
  } catch (e) {
    error = e;
  }
  expect(error, `${row.api}: ${row.input} must be refused`).to.not.equal(undefined);
  expect(error, String((error as Error)?.stack ?? error)).to.be.instanceOf(LockConfigError);
  const message = (error as Error).message;
  if (typeof row.names === 'string') expect(message).to.contain(row.names);
  else expect(message).to.match(row.names);
}

/** The rows that need a database (an installed DataSource). */
function databaseRows(env: SuiteEnv, bare: () => DataSource): Row[] {
  const accounts = () => env.ds.getRepository(EdgeAccount);
  const account = () => accounts().create({ id: 1, name: 'x', credits: 1 });
  return [
    ...generic('transaction', (o, fn) => transaction(fn, o), 'fn', [
      {
        api: 'transaction',
        input: "unknown option 'isolationLevel' (a typo of isolation)",
        names: "unknown option 'isolationLevel'",
        run: () => transaction(noop, { isolationLevel: 'SERIALIZABLE' } as any),
      },
      { api: 'transaction', input: 'propagation 42', names: 'propagation', run: () => transaction(noop, { propagation: 42 as any }) },
      { api: 'transaction', input: 'isolation lower case', names: 'isolation', run: () => transaction(noop, { isolation: 'serializable' as any }) },
      { api: 'transaction', input: 'dataSource a string', names: 'dataSource', run: () => transaction(noop, { dataSource: 'default' }) },
    ]),
    ...generic('withLock', (o, fn) => withLock(account(), fn, o), 'fn', [
      { api: 'withLock', input: 'entity null', names: 'entity', run: () => withLock(null as any, noop) },
      { api: 'withLock', input: 'entity undefined', names: 'entity', run: () => withLock(undefined as any, noop) },
      { api: 'withLock', input: "entity a string ('42')", names: 'entity', run: () => withLock('42' as any, noop) },
      { api: 'withLock', input: 'entity a class instead of an instance', names: 'entity', run: () => withLock(EdgeAccount as any, noop) },
      {
        api: 'withLock',
        input: "unknown option 'timeout' (a typo of timeoutMs)",
        names: "unknown option 'timeout'",
        run: () => withLock(account(), noop, { timeout: 5 } as any),
      },
    ]),
    ...generic('lock', (o) => lock(account(), o), undefined, [
      { api: 'lock', input: 'entity null', names: 'entity', run: () => lock(null as any) },
      { api: 'lock', input: 'entity a number', names: 'entity', run: () => lock(7 as any) },
      { api: 'lock', input: 'entity an array of entities', names: 'entity', run: () => lock([account()] as any) },
      { api: 'lock', input: "mode 'exclusive'", names: 'mode', run: () => lock(account(), { mode: 'exclusive' as any }) },
      { api: 'lock', input: "unknown option 'nowait'", names: "unknown option 'nowait'", run: () => lock(account(), { nowait: true } as any) },
    ]).map((r) => ({ ...r, inTransaction: true })),
    ...generic('withPessimistic', (o, fn) => withPessimistic(fn, o), /expected a function|fn/, [
      { api: 'withPessimistic', input: 'entities [null]', names: 'entities', run: () => withPessimistic(noop, { entities: [null as any] }) },
      {
        api: 'withPessimistic',
        input: "unknown option 'entity'",
        names: "unknown option 'entity'",
        run: () => withPessimistic(noop, { entity: EdgeAccount } as any),
      },
    ]),
    ...generic('withAdvisoryLock', (o, fn) => withAdvisoryLock('k', fn, o), 'body', [
      { api: 'withAdvisoryLock', input: 'key undefined', names: 'key', run: () => withAdvisoryLock(undefined as any, noop) },
      { api: 'withAdvisoryLock', input: 'key an object', names: 'key', run: () => withAdvisoryLock({ id: 1 } as any, noop) },
    ]),
    ...generic('withAdvisoryLocks', (o, fn) => withAdvisoryLocks(['a', 'b'], fn, o), 'body', [
      { api: 'withAdvisoryLocks', input: 'keys null', names: 'array of keys', run: () => withAdvisoryLocks(null as any, noop) },
      { api: 'withAdvisoryLocks', input: 'keys [] (none)', names: 'key', run: () => withAdvisoryLocks([], noop) },
    ]),
    ...generic('advisoryLockExists', (o) => advisoryLockExists('k', o), undefined, [
      { api: 'advisoryLockExists', input: 'key undefined', names: 'key', run: () => advisoryLockExists(undefined as any) },
      { api: 'advisoryLockExists', input: 'key a boolean', names: 'key', run: () => advisoryLockExists(false as any) },
      {
        api: 'advisoryLockExists',
        input: "unknown option 'timeoutMs'",
        names: "unknown option 'timeoutMs'",
        run: () => advisoryLockExists('k', { timeoutMs: 1 } as any),
      },
      { api: 'advisoryLockExists', input: 'dataSource a number', names: 'dataSource', run: () => advisoryLockExists('k', { dataSource: 1 }) },
    ]),
    ...(
      [
        ['repository null', () => createOrFind(null as any, { email: 'a' }), 'repository'],
        ['repository undefined', () => createOrFind(undefined as any, { email: 'a' }), 'repository'],
        ['repository an entity class', () => createOrFind(EdgeMember as any, { email: 'a' }), 'repository'],
        ['repository a DataSource', () => createOrFind(env.ds as any, { email: 'a' }), 'repository'],
        ['where null', () => createOrFind(env.ds.getRepository(EdgeMember), null as any), 'where'],
        ['where undefined', () => createOrFind(env.ds.getRepository(EdgeMember), undefined as any), 'where'],
        ["where a string ('a@x')", () => createOrFind(env.ds.getRepository(EdgeMember), 'a@x' as any), 'where'],
        ['where an array', () => createOrFind(env.ds.getRepository(EdgeMember), [{ email: 'a' }] as any), 'where'],
        ['where {} (empty)', () => createOrFind(env.ds.getRepository(EdgeMember), {}), 'where'],
        ['where.email undefined', () => createOrFind(env.ds.getRepository(EdgeMember), { email: undefined }), 'where.email'],
        ['defaults null', () => createOrFind(env.ds.getRepository(EdgeMember), { email: 'a' }, null as any), 'defaults'],
        ['defaults a string', () => createOrFind(env.ds.getRepository(EdgeMember), { email: 'a' }, 'x' as any), 'defaults'],
        ['defaults an array', () => createOrFind(env.ds.getRepository(EdgeMember), { email: 'a' }, [] as any), 'defaults'],
      ] as Array<[string, () => unknown, string]>
    ).map(([input, run, names]): Row => ({ api: 'createOrFind', input, names, run })),
    ...generic('retryOnConflict', (o, fn) => retryOnConflict(fn, o), 'function', [
      { api: 'retryOnConflict', input: 'attempts 0', names: 'attempts', run: () => retryOnConflict(noop, { attempts: 0 }) },
      { api: 'retryOnConflict', input: "attempts '3'", names: 'attempts', run: () => retryOnConflict(noop, { attempts: '3' as any }) },
      { api: 'retryOnConflict', input: 'on [null]', names: 'on', run: () => retryOnConflict(noop, { on: [null as any] }) },
      { api: 'retryOnConflict', input: "onRetry 'log'", names: 'onRetry', run: () => retryOnConflict(noop, { onRetry: 'log' as any }) },
      {
        api: 'retryOnConflict',
        input: "unknown option 'retries' (a typo of attempts)",
        names: "unknown option 'retries'",
        run: () => retryOnConflict(noop, { retries: 3 } as any),
      },
    ]),
    ...generic('installLocking', (o) => installLocking(bare(), o), undefined, [
      { api: 'installLocking', input: 'dataSource null', names: 'DataSource', run: () => installLocking(null as any) },
      { api: 'installLocking', input: 'dataSource a string', names: 'DataSource', run: () => installLocking('postgres://x' as any) },
      { api: 'installLocking', input: 'dataSource a repository', names: 'DataSource', run: () => installLocking(env.ds.getRepository(EdgeAccount) as any) },
      { api: 'installLocking', input: 'connectionTimeoutMs −1', names: 'connectionTimeoutMs', run: () => installLocking(bare(), { connectionTimeoutMs: -1 }) },
      { api: 'installLocking', input: 'observers not an array', names: 'observers', run: () => installLocking(bare(), { observers: {} as any }) },
      {
        api: 'installLocking',
        input: "unknown option 'namespaces' (a typo of namespace)",
        names: "unknown option 'namespaces'",
        run: () => installLocking(bare(), { namespaces: 'x' } as any),
      },
    ]),
  ];
}

/** Rows that need no database. */
const PURE_ROWS: Row[] = [
  ...generic('Current.run', (o, fn) => Current.run(o === undefined ? {} : o, fn), 'fn')
    .map((r) => (r.input.startsWith('options') ? { ...r, input: r.input.replace('options', 'values'), names: 'values', run: r.run } : r))
    .filter((r) => !/values (a function|a Promise)/.test(r.input)),
  { api: 'Current.run', input: 'values a Map', names: 'values', run: () => Current.run(new Map() as any, noop) },
  { api: 'Current.get', input: 'key an object', names: 'key', run: () => Current.get({} as any) },
  { api: 'Current.set', input: 'key undefined', names: 'key', run: () => Current.run({}, () => Current.set(undefined as any, 1)) },
  { api: 'defineCurrent().run', input: 'values null', names: 'values', run: () => defineCurrent<{ a: number }>().run(null as any, noop) },
  ...BAD_OPTIONS.filter(([input]) => input !== 'options a Promise (a forgotten await)').map(([input, value]): Row => ({
    api: '@Transactional',
    input,
    names: 'options',
    run: () => Transactional(value as any),
  })),
  { api: '@Transactional', input: "unknown option 'readOnly'", names: "unknown option 'readOnly'", run: () => Transactional({ readOnly: true } as any) },
  ...BAD_OPTIONS.map(([input, value]): Row => ({ api: '@Pessimistic', input, names: 'options', run: () => Pessimistic(value as any) })),
  ...BAD_OPTIONS.map(([input, value]): Row => ({ api: '@AdvisoryLock', input, names: 'options', run: () => AdvisoryLock('k', value as any) })),
  { api: '@AdvisoryLock', input: 'key undefined', names: 'key', run: () => AdvisoryLock(undefined as any) },
  ...BAD_OPTIONS.map(([input, value]): Row => ({ api: '@RetryOnConflict', input, names: 'options', run: () => RetryOnConflict(value as any) })),
  ...BAD_OPTIONS.map(([input, value]): Row => ({ api: '@Versioned', input, names: 'options', run: () => Versioned(value as any) })),
  { api: 'versioned', input: 'entity class null', names: 'entity class', run: () => versioned(null as any) },
  { api: 'versioned', input: 'entity class an instance', names: 'entity class', run: () => versioned(new EdgeAccount() as any) },
  ...BAD_CALLBACKS.filter(([input]) => input !== 'callback a Promise (called instead of passed)').map(([input, value]): Row => ({
    api: '@AroundCreate',
    input: input.replace('callback', 'hook'),
    names: 'hook',
    run: () => AroundCreate(value as any)(class Foo {}),
  })),
  { api: 'addAroundCreate', input: 'entity class null', names: 'entity class', run: () => addAroundCreate(null as any, noop) },
  { api: 'addAroundCreate', input: 'hook a string', names: 'hook', run: () => addAroundCreate(EdgeAccount, 'lock' as any) },
  ...BAD_OPTIONS.map(([input, value]): Row => ({ api: '@LockedTree', input, names: 'options', run: () => LockedTree(value as any) })),
  ...BAD_OPTIONS.map(([input, value]): Row => ({ api: 'lockedTree', input, names: 'options', run: () => lockedTree(class Tree {}, value as any) })),
  { api: 'lockedTree', input: 'entity class null', names: 'entity class', run: () => lockedTree(null as any) },
  { api: 'lockedTree', input: "unknown option 'mode'", names: "unknown option 'mode'", run: () => lockedTree(class Tree {}, { mode: 'read' } as any) },
  { api: 'lockParent', input: 'relation null', names: 'relation', run: () => lockParent(null as any) },
  { api: 'lockParent', input: 'relation undefined', names: 'relation', run: () => lockParent(undefined as any) },
  { api: 'lockParent', input: 'options null', names: 'options', run: () => lockParent('site', null as any) },
  { api: 'lockParent', input: 'options a string', names: 'options', run: () => lockParent('site', 'nowait' as any) },
];

/** A standard (TC39) method decorator call: `(method, context)`, as tsx/esbuild emit without experimentalDecorators. */
function tc39Method(decorator: any, name = 'charge'): unknown {
  async function charge() {}
  return decorator(charge, { kind: 'method', name, static: false, private: false, addInitializer() {}, access: { has: () => true, get: () => charge } });
}
function tc39Class(decorator: any): unknown {
  class Foo {}
  return decorator(Foo, { kind: 'class', name: 'Foo', addInitializer() {} });
}

const TC39_ROWS: Row[] = [
  { api: '@Transactional', input: 'as a standard (TC39) decorator', names: 'experimentalDecorators', run: () => tc39Method(Transactional()) },
  { api: '@Pessimistic', input: 'on a method, as a standard decorator', names: 'experimentalDecorators', run: () => tc39Method(Pessimistic()) },
  { api: '@Pessimistic', input: 'on a class, as a standard decorator', names: 'experimentalDecorators', run: () => tc39Class(Pessimistic()) },
  { api: '@AdvisoryLock', input: 'on a method, as a standard decorator', names: 'experimentalDecorators', run: () => tc39Method(AdvisoryLock('k')) },
  { api: '@AdvisoryLock', input: 'on a class, as a standard decorator', names: 'experimentalDecorators', run: () => tc39Class(AdvisoryLock(() => 'k')) },
  { api: '@RetryOnConflict', input: 'as a standard decorator', names: 'experimentalDecorators', run: () => tc39Method(RetryOnConflict()) },
  { api: '@Versioned', input: 'as a standard decorator', names: 'experimentalDecorators', run: () => tc39Class(Versioned()) },
  { api: '@LockedTree', input: 'as a standard decorator', names: 'experimentalDecorators', run: () => tc39Class(LockedTree()) },
  { api: '@AroundCreate', input: 'as a standard decorator', names: 'experimentalDecorators', run: () => tc39Class(AroundCreate(lockParent('site'))) },
  { api: '@Transactional', input: 'the message names the method', names: 'charge', run: () => tc39Method(Transactional(), 'charge') },
];

describeEachBackend('bad input is refused before anything is sent', EDGE_ENTITIES, (env) => {
  /** A DataSource ormlock is not installed on (for installLocking's checks). */
  let bare: DataSource;
  before(async () => {
    bare = (await createDataSource(env.name, EDGE_ENTITIES, { fresh: false, poolSize: 1 }))!;
  });
  after(async () => {
    if (bare?.isInitialized) await bare.destroy();
  });
  // the rows are built once the DataSources exist; mocha needs the titles now
  const titles = databaseRows({} as SuiteEnv, () => bare);
  titles.forEach((row, i) => {
    it(`${row.api}: ${row.input} → LockConfigError naming ${String(row.names)}`, async () => {
      const live = databaseRows(env, () => bare)[i];
      const check = async () => {
        env.log.start();
        try {
          await expectConfigError(live);
        } finally {
          expect(env.log.stop(), 'statements sent before the refusal').to.deep.equal([]);
        }
      };
      await (live.inTransaction ? transaction(check) : check());
    });
  });
});

describe('bad input without a database: functions, decorators', () => {
  for (const row of PURE_ROWS) it(`${row.api}: ${row.input} → LockConfigError naming ${String(row.names)}`, () => expectConfigError(row));
});

describe('standard (TC39) decorators are detected', () => {
  for (const row of TC39_ROWS) it(`${row.api}: ${row.input} → LockConfigError naming ${String(row.names)}`, () => expectConfigError(row));
});

describe('bad input to Redlock [redis]', () => {
  let client: Redis;
  let redlock: Redlock;
  before(async function () {
    client = clientFor(redisUrls()[0]);
    try {
      await new Promise((resolve, reject) => {
        if (client.status === 'ready') return resolve(undefined);
        client.once('ready', resolve);
        client.once('error', reject);
      });
    } catch (error) {
      if (process.env.CI) throw error;
      console.warn(`[ormlock tests] SKIPPING Redlock bad inputs: ${(error as Error).message}`);
      return this.skip();
    }
    redlock = new Redlock([client], { prefix: `ormlock-bad:${process.pid}:`, retryCount: 0 });
  });
  after(() => client?.disconnect());

  const rows = (): Row[] => [
    ...BAD_OPTIONS.map(([input, value]): Row => ({ api: 'new Redlock', input, names: 'options', run: () => new Redlock([client], value as any) })),
    { api: 'new Redlock', input: 'clients undefined', names: 'client', run: () => new Redlock(undefined as any) },
    { api: 'new Redlock', input: 'clients a URL string', names: 'client', run: () => new Redlock('redis://127.0.0.1' as any) },
    ...BAD_OPTIONS.map(([input, value]): Row => ({ api: 'Redlock.acquire', input, names: 'options', run: () => redlock.acquire('k', 1000, value as any) })),
    { api: 'Redlock.acquire', input: 'ttlMs undefined', names: 'ttlMs', run: () => redlock.acquire('k', undefined as any) },
    { api: 'Redlock.acquire', input: 'key undefined', names: 'key', run: () => redlock.acquire(undefined as any, 1000) },
    ...BAD_CALLBACKS.map(([input, value]): Row => ({ api: 'Redlock.using', input, names: 'function', run: () => redlock.using('k', 1000, value as any) })),
    ...BAD_OPTIONS.map(([input, value]): Row => ({ api: 'Redlock.using', input, names: 'options', run: () => redlock.using('k', 1000, noop, value as any) })),
    ...BAD_CALLBACKS.map(([input, value]): Row => ({
      api: 'withDistributedLock',
      input,
      names: /fn|function/,
      run: () => withDistributedLock(redlock, 'k', 1000, value as any),
    })),
    {
      api: '@DistributedLock',
      input: 'options null (at class definition)',
      names: 'options',
      run: () => {
        class Bad {
          async m() {}
        }
        return DistributedLock('k', null as any)(Bad.prototype, 'm', Object.getOwnPropertyDescriptor(Bad.prototype, 'm')!);
      },
    },
    {
      api: '@DistributedLock',
      input: 'as a standard decorator',
      names: 'experimentalDecorators',
      run: () => tc39Method(DistributedLock('k', { redlock, ttlMs: 1000 })),
    },
  ];
  // titles first (client not connected yet: build with placeholders)
  rows().forEach((row, i) => {
    it(`${row.api}: ${row.input} → LockConfigError naming ${String(row.names)}`, () => expectConfigError(rows()[i]));
  });
});

describeEachBackend('good input of unusual shapes still works', EDGE_ENTITIES, (env) => {
  it('options made with Object.create(null), or an instance of the caller’s own class, are accepted', async () => {
    const bare = Object.assign(Object.create(null), { isolation: 'READ COMMITTED' });
    class TxOptions {
      propagation = 'required' as const;
    }
    expect(await transaction(async () => 1, bare)).to.equal(1);
    expect(await transaction(async () => 2, new TxOptions())).to.equal(2);
    expect(await withAdvisoryLock('edge-good-shape', async () => 3, Object.create(null))).to.equal(3);
    void env;
  });

  it('Current.run accepts an instance of the caller’s own class as values', () => {
    class RequestValues {
      userId = 7;
    }
    expect(Current.run(new RequestValues() as any, () => Current.get('userId'))).to.equal(7);
  });
});
