/**
 * Bad inputs across the public API, as one table: hostile lock keys (which must WORK, and
 * really lock), bad keys, bad options, misdeclared decorators and bad setup. Every row names
 * the error class and a message fragment it must give, or 'works'. The database rows run on
 * PostgreSQL and on MariaDB; the Redlock rows once, on Redis.
 */
import { expect } from 'chai';
import Redis from 'ioredis';
import { DataSource, type Repository } from 'typeorm';
import {
  AdvisoryLock,
  AroundCreate,
  Current,
  DistributedLock,
  LockConfigError,
  LockError,
  LockNotAvailableError,
  Pessimistic,
  Redlock,
  RetryOnConflict,
  StaleEntityError,
  Transactional,
  TransactionRequiredError,
  advisoryKeys,
  advisoryLockExists,
  createOrFind,
  installLocking,
  lock,
  lockParent,
  retryOnConflict,
  transaction,
  withAdvisoryLock,
  withAdvisoryLocks,
  withLock,
  withPessimistic,
  type AdvisoryKey,
  type LockingHandle,
} from '../../src';
import { runInFrame } from '../../src/context/store';
import { BACKENDS, createDataSource, dataSourceOptions, type BackendName } from '../support/backends';
import { clientFor, unavailable } from '../support/redis-servers';
import {
  ContradictoryPolicy,
  InverseChild,
  InverseParent,
  KeyShareEntity,
  NoVersionColumn,
  SessionEntityLock,
  StressItem,
  StressTag,
  UnknownParent,
} from './fixtures/bad-input-entities';
import { NS, redisNodes } from './support/shared';
import { summary, type BadInputRecord } from './support/summary';

type ErrorClass = abstract new (...args: any[]) => Error;
type Expectation = 'works' | { error: ErrorClass; message: string | RegExp };

interface Env {
  backend: BackendName;
  ds: DataSource;
  items: Repository<StressItem>;
  tags: Repository<StressTag>;
  /** A saved item. */
  item: StressItem;
  /** An initialized DataSource on which ormlock is NOT installed (for installLocking's option checks). */
  bare: DataSource;
}

interface Row<E> {
  api: string;
  input: string;
  expect: Expectation | ((env: E) => Expectation);
  run: (env: E) => unknown;
}

const rejects = (error: ErrorClass, message: string | RegExp): Expectation => ({ error, message });
const config = (message: string | RegExp) => rejects(LockConfigError, message);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `fn` outside any ambient transaction or held lock, like another request. */
function outside<T>(fn: () => Promise<T>): Promise<T> {
  return runInFrame({ txs: new Map(), values: new Map() }, fn);
}

/** Inside a lock on `key`: the database says it is held, and another context cannot take it. */
async function provesHeld(key: AdvisoryKey): Promise<void> {
  expect(await advisoryLockExists(key), 'advisoryLockExists inside the lock').to.equal(true);
  const other = await outside(() => withAdvisoryLock(key, async () => 'taken', { timeoutMs: 0 })).then(
    () => null,
    (e) => e,
  );
  expect(other, 'another context must not get the lock').to.be.instanceOf(LockNotAvailableError);
}

/** A hostile key must work: the body runs holding a real lock, which is gone afterwards. */
async function hostileAdvisory(key: AdvisoryKey, scope: 'transaction' | 'session' = 'transaction'): Promise<void> {
  const result = await withAdvisoryLock(
    key,
    async () => {
      await provesHeld(key);
      return 'ran';
    },
    { scope },
  );
  expect(result).to.equal('ran');
  expect(await advisoryLockExists(key), 'released afterwards').to.equal(false);
}

/** Two keys must be two locks: holding one, the other can still be taken at once. */
async function distinctLocks(a: AdvisoryKey, b: AdvisoryKey): Promise<void> {
  await withAdvisoryLock(a, async () => {
    const got = await outside(() => withAdvisoryLock(b, async () => 'free', { timeoutMs: 0 }));
    expect(got, `holding ${String(a).slice(0, 20)}… must not block ${String(b).slice(0, 20)}…`).to.equal('free');
  });
}

/** installLocking on a DataSource of `entities` only (never synchronized); uninstalls if it succeeds. */
async function installWith(backend: BackendName, entities: Function[]): Promise<void> {
  const ds = await createDataSource(backend, entities, { fresh: false, poolSize: 1 });
  try {
    const handle = await installLocking(ds!, { namespace: NS });
    handle.uninstall();
  } finally {
    await ds!.destroy();
  }
}

const noop = async () => undefined;

/** Hostile advisory keys: bound parameters / hashed, never SQL text. All must work. */
const HOSTILE_KEYS: Array<[string, AdvisoryKey]> = [
  ['quote + DROP TABLE', "'; DROP TABLE stress_items; --"],
  ['comment terminator */', '*/ SELECT pg_sleep(10); /*'],
  ['line comment --', '-- SELECT 1'],
  ['quotes and backslashes', `"dq" 'sq' \`bt\` \\ \\' \\\\`],
  ['placeholder look-alikes', '$1 ? :name %s ${x} @p0'],
  ['unicode (CJK, Cyrillic, emoji, ẞ, RTL override)', '鍵 ключ 🔒 ẞ \u202Eevil'],
  ['newlines and tabs', 'line1\nline2\r\n\tend'],
  ['10,000 characters', 'x'.repeat(10_000)],
  ['10,000 emoji (40 KB of UTF-8)', '🔒'.repeat(10_000)],
  ["'#', the hashed-name separator", 'a#b#0123456789abcdef'],
  ['a NUL byte', 'nul\u0000byte'],
  ['composite with hostile parts', ['tenant', "o'brien; --", 42, 9007199254740993n]],
  ['bigint 2^63 − 1', 2n ** 63n - 1n],
  ['bigint −2^63', -(2n ** 63n)],
  ['negative number', -1],
];

const DB_ROWS: Array<Row<Env>> = [
  // ---- advisory: hostile keys must work --------------------------------------------------------
  ...HOSTILE_KEYS.map(([name, key]): Row<Env> => ({
    api: 'withAdvisoryLock',
    input: `hostile key: ${name}`,
    expect: 'works',
    run: () => hostileAdvisory(key),
  })),
  {
    api: 'withAdvisoryLock',
    input: "hostile key, scope 'session': 10,000 characters of SQL",
    expect: 'works',
    run: () => hostileAdvisory("'; --*/".repeat(1429), 'session'),
  },
  {
    api: '@AdvisoryLock',
    input: 'key function returning a hostile key',
    expect: 'works',
    run: async () => {
      class Job {
        @AdvisoryLock((name: string) => ['job', name])
        async run(name: string) {
          await provesHeld(['job', name]);
          return name.length;
        }
      }
      expect(await new Job().run("x'); DELETE FROM stress_items; --")).to.equal(33);
    },
  },
  {
    api: 'withAdvisoryLocks',
    input: 'several hostile keys at once',
    expect: 'works',
    run: () =>
      withAdvisoryLocks(["k'1", 'k*/2', 'k--3'], async () => {
        for (const k of ["k'1", 'k*/2', 'k--3']) await provesHeld(k);
      }),
  },
  {
    api: 'withAdvisoryLock',
    input: '10,000 vs 10,001 characters are two locks',
    expect: 'works',
    run: () => distinctLocks('y'.repeat(10_000), 'y'.repeat(10_001)),
  },
  { api: 'withAdvisoryLock', input: "1 and '1' are two locks", expect: 'works', run: () => distinctLocks(1, '1') },
  { api: 'withAdvisoryLock', input: "'Key' and 'key' are two locks", expect: 'works', run: () => distinctLocks('Key', 'key') },

  // ---- advisory: bad keys ---------------------------------------------------------------------
  { api: 'withAdvisoryLock', input: "key ''", expect: config('is an empty string'), run: () => withAdvisoryLock('', noop) },
  { api: 'withAdvisoryLock', input: 'key null', expect: config('the key is null'), run: () => withAdvisoryLock(null as any, noop) },
  { api: 'withAdvisoryLock', input: 'key undefined', expect: config('the key is undefined'), run: () => withAdvisoryLock(undefined as any, noop) },
  { api: 'withAdvisoryLock', input: 'key {} (an object)', expect: config('the key is object'), run: () => withAdvisoryLock({} as any, noop) },
  { api: 'withAdvisoryLock', input: 'key [] (empty array)', expect: config('an empty array is not a key'), run: () => withAdvisoryLock([], noop) },
  { api: 'withAdvisoryLock', input: "key [['nested']]", expect: config('a nested array'), run: () => withAdvisoryLock([['nested']] as any, noop) },
  { api: 'withAdvisoryLock', input: 'key NaN', expect: config('not a finite number'), run: () => withAdvisoryLock(NaN, noop) },
  { api: 'withAdvisoryLock', input: 'key Infinity', expect: config('not a finite number'), run: () => withAdvisoryLock(Infinity, noop) },
  { api: 'withAdvisoryLock', input: 'key Symbol()', expect: config('symbol'), run: () => withAdvisoryLock(Symbol('k') as any, noop) },
  { api: 'withAdvisoryLock', input: 'key true', expect: config('boolean'), run: () => withAdvisoryLock(true as any, noop) },
  {
    api: 'withAdvisoryLock',
    input: 'key function that throws',
    expect: config('the key function threw: boom'),
    run: () =>
      withAdvisoryLock(() => {
        throw new Error('boom');
      }, noop),
  },
  {
    api: 'withAdvisoryLock',
    input: 'key function returning undefined',
    expect: config('returned undefined'),
    run: () => withAdvisoryLock((() => undefined) as any, noop),
  },
  {
    api: 'withAdvisoryLock',
    input: 'key function returning a Promise',
    expect: config('returned a Promise'),
    run: () => withAdvisoryLock((async () => 'k') as any, noop),
  },
  {
    api: 'withAdvisoryLock',
    input: 'advisoryKeys() with no keys',
    expect: config('advisoryKeys() was given no keys'),
    run: () => withAdvisoryLock(advisoryKeys(), noop),
  },
  { api: 'withAdvisoryLock', input: 'body not a function', expect: config('the body must be a function'), run: () => withAdvisoryLock('k', 'SELECT 1' as any) },
  { api: 'withAdvisoryLocks', input: 'keys not an array', expect: config('must be an array of keys'), run: () => withAdvisoryLocks('k' as any, noop) },
  { api: 'advisoryLockExists', input: 'key null', expect: config('invalid advisory lock key'), run: () => advisoryLockExists(null as any) },
  {
    api: '@AdvisoryLock',
    input: "key '' (at class definition)",
    expect: config('@AdvisoryLock on Bad.run'),
    run: () => {
      class Bad {
        @AdvisoryLock('')
        async run() {}
      }
      return Bad;
    },
  },
  {
    api: '@AdvisoryLock',
    input: 'key function throwing (at the call)',
    expect: config(/@AdvisoryLock on Bad\.run: the key function threw: no id/),
    run: () => {
      class Bad {
        @AdvisoryLock((id?: number) => {
          if (id === undefined) throw new Error('no id');
          return id;
        })
        async run(_id?: number) {}
      }
      return new Bad().run();
    },
  },
  {
    api: '@AdvisoryLock',
    input: 'on a sync method',
    expect: config('must be async'),
    run: () => {
      class Bad {
        @AdvisoryLock('k')
        run() {
          return 1;
        }
      }
      return Bad;
    },
  },

  // ---- advisory: bad options ------------------------------------------------------------------
  {
    api: 'withAdvisoryLock',
    input: "scope 'global'",
    expect: config("scope 'global' is not one of"),
    run: () => withAdvisoryLock('k', noop, { scope: 'global' as any }),
  },
  {
    api: 'withAdvisoryLock',
    input: 'timeoutMs −1',
    expect: config('timeoutMs must be a number ≥ 0'),
    run: () => withAdvisoryLock('k', noop, { timeoutMs: -1 }),
  },
  {
    api: 'withAdvisoryLock',
    input: 'timeoutMs NaN',
    expect: config('timeoutMs must be a number ≥ 0'),
    run: () => withAdvisoryLock('k', noop, { timeoutMs: NaN }),
  },
  {
    api: 'withAdvisoryLock',
    input: "onTimeout 'ignore'",
    expect: config("onTimeout 'ignore'"),
    run: () => withAdvisoryLock('k', noop, { onTimeout: 'ignore' as any }),
  },
  {
    api: 'withAdvisoryLock',
    input: 'unknown option timeout (typo of timeoutMs)',
    expect: config("unknown option 'timeout'"),
    run: () => withAdvisoryLock('k', noop, { timeout: 5 } as any),
  },
  {
    api: 'withAdvisoryLock',
    input: "shared 'yes'",
    expect: config('shared must be a boolean'),
    run: () => withAdvisoryLock('k', noop, { shared: 'yes' as any }),
  },
  {
    api: 'withAdvisoryLock',
    input: 'shared: true',
    expect: (env) => (env.backend === 'postgres' ? 'works' : config('shared advisory locks are not available')),
    run: () => withAdvisoryLock('shared-k', async () => expect(await advisoryLockExists('shared-k')).to.equal(true), { shared: true }),
  },
  {
    api: '@AdvisoryLock',
    input: "scope 'bogus' (at class definition)",
    expect: config("@AdvisoryLock on Bad.run: scope 'bogus'"),
    run: () => {
      class Bad {
        @AdvisoryLock('k', { scope: 'bogus' as any })
        async run() {}
      }
      return Bad;
    },
  },
  {
    api: '@AdvisoryLock (entity)',
    input: "scope 'session' on an entity class",
    expect: config('SessionEntityLock'),
    run: (env) => installWith(env.backend, [SessionEntityLock]),
  },

  // ---- row locks --------------------------------------------------------------------------------
  {
    api: 'lock',
    input: 'outside a transaction',
    expect: rejects(TransactionRequiredError, 'lock(StressItem): locking StressItem needs a transaction'),
    run: (env) => lock(env.item),
  },
  { api: 'lock', input: 'null', expect: config('the entity must be an entity instance (got null)'), run: () => transaction(() => lock(null as any)) },
  { api: 'lock', input: 'a plain object', expect: config('is not an entity of'), run: () => transaction(() => lock({ id: 1 })) },
  {
    api: 'lock',
    input: 'an entity without a primary key value',
    expect: config('has no primary-key value'),
    run: (env) => transaction(() => lock(env.items.create({ name: 'new' }))),
  },
  {
    api: 'lock',
    input: 'an entity whose row was deleted',
    expect: rejects(StaleEntityError, 'no longer exists'),
    run: async (env) => {
      const gone = await env.items.save(env.items.create({ name: 'gone' }));
      await env.items.delete(gone.id);
      return transaction(() => lock(gone));
    },
  },
  {
    api: 'withLock',
    input: "mode 'exclusive'",
    expect: config("mode 'exclusive' is not one of"),
    run: (env) => withLock(env.item, noop, { mode: 'exclusive' as any }),
  },
  {
    api: 'withLock',
    input: "onLocked 'later'",
    expect: config("onLocked 'later' is not one of"),
    run: (env) => withLock(env.item, noop, { onLocked: 'later' as any }),
  },
  { api: 'withLock', input: 'timeoutMs −1', expect: config('timeoutMs must be a number ≥ 0'), run: (env) => withLock(env.item, noop, { timeoutMs: -1 }) },
  {
    api: 'withLock',
    input: "timeoutMs '500' (a string)",
    expect: config('timeoutMs must be a number ≥ 0'),
    run: (env) => withLock(env.item, noop, { timeoutMs: '500' as any }),
  },
  {
    api: 'withLock',
    input: "onLocked 'nowait' with timeoutMs 500",
    expect: config("timeoutMs applies only to onLocked 'wait'"),
    run: (env) => withLock(env.item, noop, { onLocked: 'nowait', timeoutMs: 500 }),
  },
  {
    api: 'withLock',
    input: "mode 'no_key_update'",
    expect: (env) => (env.backend === 'postgres' ? 'works' : config('no_key_update')),
    run: (env) => withLock(env.item, noop, { mode: 'no_key_update' }),
  },
  {
    api: 'withLock',
    input: "isolation 'CHAOS'",
    expect: config("isolation 'CHAOS' is not one of"),
    run: (env) => withLock(env.item, noop, { isolation: 'CHAOS' as any }),
  },
  ...["'; DROP TABLE stress_tags; --", '*/ -- 鍵 🔒', `q"'\`\\`, 'z'.repeat(255)].map((id): Row<Env> => ({
    api: 'withLock',
    input: `hostile primary key ${JSON.stringify(id.length > 20 ? `${id.slice(0, 10)}…(${id.length})` : id)}`,
    expect: 'works',
    run: async (env) => {
      await env.tags.save(env.tags.create({ id, n: 0 }));
      await withLock(env.tags.create({ id }), async (tag) => {
        tag.n += 1;
        await env.tags.save(tag);
      });
      expect((await env.tags.findOneByOrFail({ id })).n).to.equal(1);
    },
  })),
  {
    api: 'withPessimistic',
    input: "entities 'StressItem' (a string)",
    expect: config('entities must be an array of entity classes'),
    run: () => withPessimistic(noop, { entities: 'StressItem' as any }),
  },
  {
    api: 'withPessimistic',
    input: "mode 'bogus'",
    expect: config("withPessimistic(): mode 'bogus'"),
    run: () => withPessimistic(noop, { mode: 'bogus' as any }),
  },
  {
    api: '@Pessimistic',
    input: 'on a sync method',
    expect: config('@Pessimistic on Bad.run: the method must be async'),
    run: () => {
      class Bad {
        @Pessimistic()
        run() {
          return 1;
        }
      }
      return Bad;
    },
  },
  {
    api: '@Pessimistic',
    input: "method option onLocked 'whenever' (at the call)",
    expect: config("@Pessimistic Bad.run: onLocked 'whenever'"),
    run: () => {
      class Bad {
        @Pessimistic({ onLocked: 'whenever' as any })
        async run() {}
      }
      return new Bad().run();
    },
  },
  {
    api: '@Pessimistic (entity)',
    input: 'nowait with timeoutMs 500',
    expect: config('ContradictoryPolicy'),
    run: (env) => installWith(env.backend, [ContradictoryPolicy]),
  },
  {
    api: '@Pessimistic (entity)',
    input: "mode 'key_share'",
    expect: (env) => (env.backend === 'postgres' ? 'works' : config('KeyShareEntity')),
    run: (env) => installWith(env.backend, [KeyShareEntity]),
  },

  // ---- transactions and context ---------------------------------------------------------------
  {
    api: 'transaction',
    input: "propagation 'nested_new'",
    expect: config("propagation 'nested_new' is not one of"),
    run: () => transaction(noop, { propagation: 'nested_new' as any }),
  },
  {
    api: 'transaction',
    input: "isolation 'SNAPSHOT'",
    expect: config("isolation 'SNAPSHOT' is not one of"),
    run: () => transaction(noop, { isolation: 'SNAPSHOT' as any }),
  },
  {
    api: 'transaction',
    input: 'a different isolation when joining',
    expect: config('asked for isolation SERIALIZABLE inside a READ COMMITTED transaction'),
    run: () => transaction(() => transaction(noop, { isolation: 'SERIALIZABLE' }), { isolation: 'READ COMMITTED' }),
  },
  {
    api: 'transaction',
    input: 'a DataSource ormlock is not installed on',
    expect: config('ormlock is not installed on DataSource'),
    run: (env) => transaction(noop, { dataSource: env.bare }),
  },
  {
    api: '@Transactional',
    input: 'on a sync method',
    expect: config('@Transactional on Bad.run: the method must be async'),
    run: () => {
      class Bad {
        @Transactional()
        run() {
          return 1;
        }
      }
      return Bad;
    },
  },
  { api: 'Current.set', input: 'outside Current.run', expect: config("Current.set('user') outside Current.run()"), run: () => Current.set('user', 1) },
  { api: 'Current.run', input: 'values null', expect: config('values must be an object'), run: () => Current.run(null as any, noop) },

  // ---- optimistic, retries, unique rows -------------------------------------------------------
  {
    api: '@Versioned',
    input: 'without a @VersionColumn',
    expect: config('@Versioned on NoVersionColumn: the entity has no @VersionColumn'),
    run: (env) => installWith(env.backend, [NoVersionColumn]),
  },
  ...(
    [
      ['attempts 0', { attempts: 0 }, 'attempts must be an integer ≥ 1'],
      ['attempts 2.5', { attempts: 2.5 }, 'attempts must be an integer ≥ 1'],
      ["attempts '3'", { attempts: '3' }, 'attempts must be an integer ≥ 1'],
      ['backoffMs −1', { backoffMs: -1 }, 'backoffMs must be a finite number ≥ 0'],
      ['maxBackoffMs Infinity', { maxBackoffMs: Infinity }, 'maxBackoffMs must be a finite number ≥ 0'],
      ["on 'StaleEntityError' (a string)", { on: 'StaleEntityError' }, 'on must be an array'],
    ] as Array<[string, object, string]>
  ).map(([input, options, message]): Row<Env> => ({
    api: '@RetryOnConflict',
    input: `${input} (at class definition)`,
    expect: config(`@RetryOnConflict on Bad.run: ${message}`),
    run: () => {
      class Bad {
        @RetryOnConflict(options as any)
        async run() {}
      }
      return Bad;
    },
  })),
  {
    api: '@RetryOnConflict',
    input: 'on a sync method',
    expect: config('must be async'),
    run: () => {
      class Bad {
        @RetryOnConflict()
        run() {
          return 1;
        }
      }
      return Bad;
    },
  },
  { api: 'retryOnConflict', input: 'not a function', expect: config('retryOnConflict(): fn must be a function'), run: () => retryOnConflict('go' as any) },
  {
    api: 'retryOnConflict',
    input: 'attempts −1 (at the call)',
    expect: config('retryOnConflict(): attempts must be an integer ≥ 1'),
    run: () => retryOnConflict(noop, { attempts: -1 }),
  },
  {
    api: 'createOrFind',
    input: 'where on a column without a unique key',
    expect: config(/createOrFind\(StressItem\).*unique/),
    run: (env) => createOrFind(env.items, { name: 'dup' }),
  },
  {
    api: 'createOrFind',
    input: 'repository null',
    expect: config('repository must be a TypeORM Repository or MikroORM EntityRepository (got null)'),
    run: () => createOrFind(null as any, { name: 'x' }),
  },
  { api: 'createOrFind', input: 'where null', expect: config('where must be an object'), run: (env) => createOrFind(env.items, null as any) },
  { api: 'createOrFind', input: 'where an array', expect: config('where must be an object'), run: (env) => createOrFind(env.items, [{ id: 1 }] as any) },
  { api: 'createOrFind', input: 'defaults null', expect: config('defaults must be an object'), run: (env) => createOrFind(env.items, { id: 1 }, null as any) },

  // ---- parent lock around create ----------------------------------------------------------------
  {
    api: 'lockParent',
    input: "unknown relation 'nosuch'",
    expect: config("lockParent('nosuch') on UnknownParent: UnknownParent has no relation 'nosuch'"),
    run: (env) => installWith(env.backend, [StressItem, UnknownParent]),
  },
  {
    api: 'lockParent',
    input: "a one-to-many relation 'children'",
    expect: config("'children' is a one-to-many relation"),
    run: (env) => installWith(env.backend, [InverseParent, InverseChild]),
  },
  { api: 'lockParent', input: "relation ''", expect: config('lockParent'), run: () => lockParent('') },
  {
    api: 'lockParent',
    input: '42',
    expect: config('relation must be a relation name or a function (entity) => parent (got number 42)'),
    run: () => lockParent(42 as any),
  },
  {
    api: '@AroundCreate',
    input: 'a hook that is not a function',
    expect: config('@AroundCreate on Foo: hook 1'),
    run: () => AroundCreate('lock-it' as any)(class Foo {}),
  },

  // ---- installLocking ---------------------------------------------------------------------------
  { api: 'installLocking', input: 'undefined', expect: config('expected a TypeORM DataSource'), run: () => installLocking(undefined as any) },
  { api: 'installLocking', input: 'a plain object', expect: config('expected a TypeORM DataSource'), run: () => installLocking({} as any) },
  {
    api: 'installLocking',
    input: 'an uninitialized DataSource',
    expect: config('initialize()'),
    run: async (env) => installLocking(new DataSource((await dataSourceOptions(env.backend, [StressItem], { fresh: false }))!)),
  },
  { api: 'installLocking', input: 'twice on one DataSource', expect: config('already installed'), run: (env) => installLocking(env.ds) },
  {
    api: 'installLocking',
    input: 'namespace 5',
    expect: config('namespace must be a string'),
    run: (env) => installLocking(env.bare, { namespace: 5 as any }),
  },
  {
    api: 'installLocking',
    input: 'lockTimeoutMs −5',
    expect: config('lockTimeoutMs must be a number ≥ 0'),
    run: (env) => installLocking(env.bare, { lockTimeoutMs: -5 }),
  },
  {
    api: 'installLocking',
    input: 'advisoryTimeoutMs NaN',
    expect: config('advisoryTimeoutMs must be a number ≥ 0'),
    run: (env) => installLocking(env.bare, { advisoryTimeoutMs: NaN }),
  },
  {
    api: 'installLocking',
    input: "onLockEvent 'log'",
    expect: config('onLockEvent must be a function'),
    run: (env) => installLocking(env.bare, { onLockEvent: 'log' as any }),
  },
];

interface RedisEnv {
  client: Redis;
  redlock: Redlock;
  /** Extra clients made by rows (closed afterwards). */
  extra: Redis[];
}

const REDIS_HOSTILE: Array<[string, string]> = [
  ['quote + SQL', "'; DROP TABLE x; --"],
  ['comment tokens */ and --', '*/ -- /*'],
  ['unicode', '鍵 ключ 🔒 \u202Eevil'],
  ['10,000 characters', 'r'.repeat(10_000)],
  ['hash tag and glob characters', '{slot}*?[a-z]\\'],
  ['newline and spaces', 'a b\r\nc\t'],
];

const REDIS_ROWS: Array<Row<RedisEnv>> = [
  ...REDIS_HOSTILE.map(([name, key]): Row<RedisEnv> => ({
    api: 'Redlock',
    input: `hostile key: ${name}`,
    expect: 'works',
    run: async ({ redlock, client }) => {
      const lease = await redlock.tryAcquire(key, 5000);
      expect(lease, 'granted').to.not.equal(null);
      expect(await client.get(lease!.resources[0]), 'stored under exactly that key').to.equal(lease!.value);
      expect(await redlock.tryAcquire(key, 5000), 'a second lease on the key').to.equal(null);
      expect(await lease!.release()).to.equal(true);
      expect(await client.exists(lease!.resources[0])).to.equal(0);
    },
  })),
  { api: 'Redlock', input: 'no clients ([])', expect: config('needs at least one ioredis client'), run: () => new Redlock([]) },
  { api: 'Redlock', input: 'clients null', expect: config('needs at least one ioredis client'), run: () => new Redlock(null as any) },
  { api: 'Redlock', input: 'a plain object as client', expect: config('clients[0] is not an ioredis client'), run: () => new Redlock([{} as any]) },
  { api: 'Redlock', input: 'the same client twice', expect: config('clients[1] is given twice'), run: ({ client }) => new Redlock([client, client]) },
  {
    api: 'Redlock',
    input: 'a lazyConnect client never connected',
    expect: config('lazyConnect'),
    run: ({ client, extra }) => {
      const lazy = new Redis(client.options.port!, client.options.host!, { lazyConnect: true });
      extra.push(lazy);
      return new Redlock([lazy]);
    },
  },
  // a closed client is a node that is down (a failed vote), not a set-up mistake: with it alone no quorum can be had
  {
    api: 'Redlock.acquire',
    input: 'a closed client (the only node)',
    expect: rejects(LockNotAvailableError, 'not_ready'),
    run: async ({ client, extra }) => {
      const closed = clientFor(`redis://${client.options.host}:${client.options.port}`);
      extra.push(closed);
      await new Promise((r) => closed.once('ready', r));
      const ended = new Promise((r) => closed.once('end', r));
      await closed.quit();
      await ended;
      return new Redlock([closed]).acquire('k', 1000);
    },
  },
  {
    api: 'Redlock',
    input: 'driftFactor 2',
    expect: config('driftFactor must be a number in [0, 1)'),
    run: ({ client }) => new Redlock([client], { driftFactor: 2 }),
  },
  {
    api: 'Redlock',
    input: 'retryCount −1',
    expect: config('retryCount must be a non-negative integer'),
    run: ({ client }) => new Redlock([client], { retryCount: -1 }),
  },
  ...([0, -1000, 1.5, NaN, '1000'] as unknown[]).map((ttl): Row<RedisEnv> => ({
    api: 'Redlock.tryAcquire',
    input: `ttlMs ${typeof ttl === 'string' ? `'${ttl}'` : String(ttl)}`,
    expect: config('ttlMs must be a positive integer'),
    run: ({ redlock }) => redlock.tryAcquire('k', ttl as number),
  })),
  {
    api: 'Redlock.acquire',
    input: 'ttlMs 2 (no validity after clock drift)',
    expect: config('leaves no validity'),
    run: ({ redlock }) => redlock.acquire('k', 2),
  },
  { api: 'Redlock.tryAcquire', input: "key ''", expect: config('a lock key must not be empty'), run: ({ redlock }) => redlock.tryAcquire('', 1000) },
  { api: 'Redlock.tryAcquire', input: 'keys []', expect: config('no key given'), run: ({ redlock }) => redlock.tryAcquire([], 1000) },
  {
    api: 'Redlock.tryAcquire',
    input: 'key null',
    expect: config('must be a string, number or bigint (got null)'),
    run: ({ redlock }) => redlock.tryAcquire(null as any, 1000),
  },
  { api: 'Redlock.tryAcquire', input: 'key NaN', expect: config('is not a finite number'), run: ({ redlock }) => redlock.tryAcquire(NaN, 1000) },
  {
    api: 'Redlock.using',
    input: 'fn not a function',
    expect: config('the third argument must be a function'),
    run: ({ redlock }) => redlock.using('k', 1000, 'go' as any),
  },
  { api: 'Redlock', input: 'namespace 7', expect: config('namespace must be a string'), run: ({ client }) => new Redlock([client], { namespace: 7 as any }) },
  {
    api: 'Redlock',
    input: "onLockEvent 'log'",
    expect: config('onLockEvent must be a function'),
    run: ({ client }) => new Redlock([client], { onLockEvent: 'log' as any }),
  },
  {
    api: 'Redlock',
    input: 'observers [{}]',
    expect: config('observers[0] must be an object with an onLockEvent'),
    run: ({ client }) => new Redlock([client], { observers: [{}] as any }),
  },
  {
    api: 'Redlock',
    input: 'fencing {} (no dataSource)',
    expect: config('dataSource is required'),
    run: ({ client }) => new Redlock([client], { fencing: {} as any }),
  },
  {
    api: 'Redlock',
    input: "fencing { dataSource: 'db' }",
    expect: config('must be a TypeORM DataSource on which'),
    run: ({ client }) => new Redlock([client], { fencing: { dataSource: 'db' as any } }),
  },
  {
    api: 'Redlock.using',
    input: "transaction: 'yes'",
    expect: config('transaction option must be true or false'),
    run: ({ redlock }) => redlock.using('k', 1000, async () => 1, { transaction: 'yes' as any }),
  },
  {
    api: 'Redlock.using',
    input: 'dataSource without transaction: true',
    expect: config('only applies with { transaction: true }'),
    run: ({ redlock }) => redlock.using('k', 1000, async () => 1, { dataSource: {} as any }),
  },
  {
    api: '@DistributedLock',
    input: 'on a sync method',
    expect: config('@DistributedLock on Bad.run: the method must be async'),
    run: ({ redlock }) => {
      class Bad {
        @DistributedLock('k', { redlock, ttlMs: 1000 })
        run() {
          return 1;
        }
      }
      return Bad;
    },
  },
  {
    api: '@DistributedLock',
    input: "key ''",
    expect: config("the key is an empty string; give a key, or a function of the method's arguments returning one"),
    run: ({ redlock }) => {
      class Bad {
        @DistributedLock('', { redlock, ttlMs: 1000 })
        async run() {}
      }
      return Bad;
    },
  },
  {
    api: '@DistributedLock',
    input: 'redlock missing',
    expect: config('options.redlock must be a Redlock'),
    run: () => {
      class Bad {
        @DistributedLock('k', { redlock: undefined as any, ttlMs: 1000 })
        async run() {}
      }
      return Bad;
    },
  },
  {
    api: '@DistributedLock',
    input: 'ttlMs 0',
    expect: config('options.ttlMs must be a positive integer'),
    run: ({ redlock }) => {
      class Bad {
        @DistributedLock('k', { redlock, ttlMs: 0 })
        async run() {}
      }
      return Bad;
    },
  },
];

/** Runs one row: asserts its outcome and records it for the summary. */
async function check<E>(row: Row<E>, env: E, backend: string): Promise<void> {
  const expectation = typeof row.expect === 'function' ? row.expect(env) : row.expect;
  const expected = expectation === 'works' ? 'works' : `${expectation.error.name}: ${String(expectation.message)}`;
  const kind = expectation !== 'works' ? 'reject' : /hostile|two locks/.test(row.input) ? 'hostile' : 'valid';
  const record: BadInputRecord = { api: row.api, backend, input: row.input, expected, kind, passed: false };
  summary.badInputs.push(record);
  let error: unknown;
  let threw = false;
  try {
    await row.run(env);
  } catch (e) {
    threw = true;
    error = e;
  }
  if (expectation === 'works') {
    if (threw) throw error;
  } else {
    expect(threw, `${row.api} ${row.input} must throw ${expected}`).to.equal(true);
    expect(error, `${String((error as Error)?.stack ?? error)}`).to.be.instanceOf(expectation.error);
    expect(error).to.be.instanceOf(LockError);
    const message = (error as Error).message;
    if (typeof expectation.message === 'string') expect(message).to.contain(expectation.message);
    else expect(message).to.match(expectation.message);
  }
  record.passed = true;
}

function title<E>(row: Row<E>, sample: E): string {
  const expectation = typeof row.expect === 'function' ? row.expect(sample) : row.expect;
  return `${row.api}: ${row.input} → ${expectation === 'works' ? 'works' : expectation.error.name}`;
}

for (const backend of BACKENDS) {
  describe(`stress: bad inputs [${backend}]`, function () {
    const env = { backend } as Env;
    let handle: LockingHandle | undefined;

    before(async function () {
      const ds = await createDataSource(backend, [StressItem, StressTag], { poolSize: 6 });
      if (!ds) return this.skip();
      env.ds = ds;
      handle = await installLocking(ds, { namespace: NS });
      env.items = ds.getRepository(StressItem);
      env.tags = ds.getRepository(StressTag);
      env.item = await env.items.save(env.items.create({ name: 'item' }));
      env.bare = (await createDataSource(backend, [StressItem], { fresh: false, poolSize: 1 }))!;
    });

    after(async () => {
      handle?.uninstall();
      if (env.ds?.isInitialized) await env.ds.destroy();
      if (env.bare?.isInitialized) await env.bare.destroy();
    });

    for (const row of DB_ROWS) {
      it(title(row, env), () => check(row, env, backend));
    }
  });
}

describe('stress: bad inputs [redis]', function () {
  const env = { extra: [] } as unknown as RedisEnv;

  before(async function () {
    this.timeout(30_000);
    const nodes = await redisNodes((reason) => unavailable(this, reason));
    env.client = clientFor(nodes.urls[0]);
    await new Promise((r) => (env.client.status === 'ready' ? r(undefined) : env.client.once('ready', r)));
    env.redlock = new Redlock([env.client], { prefix: `ormlock-stress:${process.pid}:bad:`, retryCount: 0 });
  });

  after(async () => {
    for (const c of [env.client, ...env.extra]) c?.disconnect();
    await sleep(10);
  });

  for (const row of REDIS_ROWS) {
    it(title(row, env), () => check(row, env, 'redis'));
  }
});
