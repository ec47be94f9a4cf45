/**
 * A lost connection is news at once. The holder's connection is killed (`pg_terminate_backend`,
 * MariaDB `KILL`) while its body runs a long sleep loop; for row locks (withLock, lock() inside
 * transaction(), withPessimistic) and advisory locks (both scopes), on TypeORM and MikroORM:
 * (a) the body's `currentLockSignal()` aborts within ~1 s of the kill (bound: 2 s),
 * (b) the call rejects with LockLostError, the driver's error as `cause`,
 * (c) nothing the body wrote in the lock's transaction commits, and a write after the loss
 *     fails (never runs on another pool connection),
 * (d) the next holder (a waiter the server shows waiting before the kill) does not overlap a body
 *     that heeds the signal (it stops within 300 ms of the next holder getting in; measured: ≤ 20 ms,
 *     the body's polling interval); the control — the same body ignoring the signal — keeps running
 *     (here: 400 ms) after the next holder got in.
 * Also: a statement cancelled while waiting for a lock comes out as LockTimeoutError.
 */
import type { EntityManager } from '@mikro-orm/core';
import { expect } from 'chai';
import {
  AdvisoryLock,
  currentLockSignal,
  currentManager,
  lock,
  LockLostError,
  LockTimeoutError,
  transaction,
  withAdvisoryLock,
  withLock,
  withPessimistic,
} from '../src';
import { ambientConnection } from '../src/context/store';
import { resolveInstallation } from '../src/installations';
import { LcRow, MkLcRow } from './fixtures/lost-connection';
import type { BackendName } from './support/backends';
import { cancelStatement, connectionIdOn, killConnection, lockWaiters } from './support/kill-connection';
import { describeEachMikroBackend } from './support/mikro-suite';
import { deferred, outside } from './support/outside';
import { describeEachBackend, sleep } from './support/suite';

/** What each ORM gives the scenarios. */
interface Harness {
  readonly name: BackendName;
  readonly orm: 'typeorm' | 'mikro-orm';
  /** Inserts a row and returns its id (outside any lock). */
  seed(note: string): Promise<number>;
  /** A fresh copy of row `id`, loaded outside any transaction. */
  load(id: number): Promise<object>;
  /** Inside a body: a read of row `id` through the ORM (locked under withPessimistic). */
  read(id: number): Promise<unknown>;
  /** Inside a body: inserts a row through the ORM, in the ambient transaction (transaction() joins it or opens one). */
  write(note: string): Promise<void>;
  /** Inside a body: the id of the connection its lock is held on (the ambient transaction's, or the one a session lock pinned). */
  connectionId(): Promise<number>;
  /** Rows with `note`, counted outside. */
  count(note: string): Promise<number>;
}

/** The id of the connection ormlock runs the current body on (the ambient transaction's, or the pinned one). */
function connectionOfBody(name: BackendName, target: object): Promise<number> {
  const connection = ambientConnection(resolveInstallation('test', { explicit: target }));
  if (!connection) throw new Error('no ambient connection in this body');
  return connectionIdOn(name, (sql) => connection.query(sql));
}

/** How long the control's body runs on after the next holder got in; a body heeding the signal must stop sooner than HEED_BOUND_MS. */
const CONTROL_OVERLAP_MS = 400;
const HEED_BOUND_MS = 300;

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e) => e,
  );

async function until(what: string, ms: number, probe: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(10);
  }
}

/** How one kind of lock holds `target` around a body, and how a second worker waits for it. */
interface Kind {
  readonly title: string;
  /** The body's writes belong to the lock's transaction (a session lock's body commits its own). */
  readonly transactional: boolean;
  /** The LockLostError's wording: the lock scope's (naming the lock), or the transaction's. */
  readonly message: RegExp;
  hold(h: Harness, target: number, key: string, body: (connectionId: () => Promise<number>) => Promise<void>): Promise<unknown>;
  wait(h: Harness, target: number, key: string, got: () => void): Promise<unknown>;
}

/** A service whose method holds an advisory lock on its first argument (the @AdvisoryLock twin of withAdvisoryLock). */
function sweeperFor(scope: 'transaction' | 'session') {
  class Sweeper {
    @AdvisoryLock((key: string) => key, { scope })
    async sweep(_key: string, h: Harness, body: (connectionId: () => Promise<number>) => Promise<void>): Promise<void> {
      await body(() => h.connectionId());
    }
  }
  return Sweeper;
}

const waitForRow = async (h: Harness, target: number, got: () => void) => withLock(await h.load(target), async () => got());
const waitForKey = (key: string, got: () => void) => withAdvisoryLock(key, async () => got(), { timeoutMs: 30_000 });

const KINDS: Kind[] = [
  {
    title: 'withLock (row lock)',
    transactional: true,
    message: /^withLock\(\): the connection holding the row lock on \w+ \d+ was lost/,
    hold: async (h, target, _key, body) => withLock(await h.load(target), () => body(() => h.connectionId())),
    wait: (h, target, _key, got) => waitForRow(h, target, got),
  },
  {
    title: 'lock() inside transaction()',
    transactional: true,
    message: /^Connection lost: the database connection closed/,
    hold: async (h, target, _key, body) => {
      const row = await h.load(target);
      return transaction(async () => {
        await lock(row);
        await body(() => h.connectionId());
      });
    },
    wait: (h, target, _key, got) => waitForRow(h, target, got),
  },
  {
    title: 'withPessimistic (a @Pessimistic method)',
    transactional: true,
    message: /^withPessimistic\(\): the connection holding its row locks was lost/,
    hold: (h, target, _key, body) =>
      withPessimistic(async () => {
        await h.read(target); // … FOR UPDATE
        await body(() => h.connectionId());
      }),
    wait: (h, target, _key, got) => waitForRow(h, target, got),
  },
  ...(['transaction', 'session'] as const).map((scope): Kind => ({
    title: `@AdvisoryLock on a method, ${scope} scope`,
    transactional: scope === 'transaction',
    message: /^@AdvisoryLock on Sweeper\.sweep: the connection holding advisory lock "lost-[\w-]+" was lost/,
    hold: (h, _target, key, body) => new (sweeperFor(scope))().sweep(key, h, body),
    wait: (_h, _target, key, got) => waitForKey(key, got),
  })),
  ...(['transaction', 'session'] as const).map((scope): Kind => ({
    title: `withAdvisoryLock, ${scope} scope`,
    transactional: scope === 'transaction',
    message: /^withAdvisoryLock: the connection holding advisory lock "lost-[\w-]+" was lost/,
    hold: (h, _target, key, body) =>
      withAdvisoryLock(
        key,
        async (ctx) => {
          expect(ctx.signal, "ctx.signal is the body's currentLockSignal()").to.equal(currentLockSignal());
          await body(() => connectionIdOn(h.name, (sql) => ctx.queryRunner.query(sql)));
        },
        { scope },
      ),
    wait: (_h, _target, key, got) => waitForKey(key, got),
  })),
];

interface Observed {
  killStartedAt: number;
  abortedAt?: number;
  rejectedAt?: number;
  stoppedAt?: number;
  gotAt?: number;
  signalReason?: unknown;
  after?: unknown;
  error: any;
}

/** One holder killed mid-body while a second worker waits for its lock. `heed`: the body's loop checks the signal. */
async function killHolder(h: Harness, kind: Kind, heed: boolean, tag: string): Promise<Observed> {
  const target = await h.seed(`${tag}-target`);
  const key = `lost-${h.orm}-${tag}`;
  const id = deferred<number>();
  const seen: Partial<Observed> = {};
  const holder = outside(() =>
    kind.hold(h, target, key, async (connectionId) => {
      const signal = currentLockSignal();
      expect(signal, 'a locked body sees a signal').to.be.instanceOf(AbortSignal);
      signal!.addEventListener('abort', () => {
        seen.abortedAt = Date.now();
        seen.signalReason = signal!.reason;
      });
      await transaction(() => h.write(`${tag}-before`));
      id.resolve(await connectionId());
      // the long sleep loop: 15 s when it checks the signal; when it does not, until 400 ms after
      // the next holder got in (if the kill freed nothing, that never comes: it runs the 15 s,
      // ending before the next holder gets in, and the control's overlap is negative)
      const end = Date.now() + 15_000;
      while (Date.now() < end && !(heed ? signal!.aborted : seen.gotAt !== undefined && Date.now() > seen.gotAt + CONTROL_OVERLAP_MS)) await sleep(20);
      seen.stoppedAt = Date.now();
      seen.after = await transaction(() => h.write(`${tag}-after`)).then(
        () => 'written',
        (e) => e,
      );
    }),
  ).then(
    () => {
      seen.rejectedAt = Date.now();
      return null;
    },
    (e) => {
      seen.rejectedAt = Date.now();
      return e;
    },
  );
  const holderId = await id.promise;
  const before = new Set(await lockWaiters(h.name));
  const waiter = outside(() => kind.wait(h, target, key, () => (seen.gotAt = Date.now())));
  await until('the server shows the waiter waiting for the lock', 10_000, async () => (await lockWaiters(h.name)).some((w) => !before.has(w)));
  expect(seen.gotAt, 'the waiter waits while the holder holds the lock').to.equal(undefined);
  seen.killStartedAt = Date.now();
  await killConnection(h.name, holderId);
  seen.error = await holder;
  await waiter;
  await until('the body finished', 20_000, () => seen.after !== undefined);
  return seen as Observed;
}

/** ORMLOCK_SIGNAL_TIMINGS=1 prints the measured ms from the kill to the abort and to the rejection. */
const timings: string[] = [];
after(() => {
  if (process.env.ORMLOCK_SIGNAL_TIMINGS && timings.length) console.log(timings.join('\n'));
});

function scenarios(h: () => Harness) {
  for (const kind of KINDS) {
    describe(kind.title, () => {
      it('killed holder: the signal aborts within 2 s, the call rejects with LockLostError (cause kept), nothing commits, no overlap with the next holder', async function () {
        const tag = `${kind.title.replace(/\W+/g, '')}-heed`.slice(0, 40);
        const seen = await killHolder(h(), kind, true, tag);
        timings.push(
          `${h().orm} ${h().name} ${kind.title}: abort ${seen.abortedAt! - seen.killStartedAt} ms, rejection ${seen.rejectedAt! - seen.killStartedAt} ms after the kill was sent`,
        );
        // (a) the signal aborted promptly, with the LockLostError as its reason
        expect(seen.abortedAt, 'the signal aborted').to.be.a('number');
        expect(seen.abortedAt! - seen.killStartedAt, 'ms from kill to abort').to.be.below(2000);
        expect(seen.signalReason).to.be.instanceOf(LockLostError);
        // (b) the call rejected at once, with LockLostError keeping the driver's error
        expect(seen.error).to.be.instanceOf(LockLostError);
        expect(seen.error.message).to.match(kind.message);
        expect(seen.signalReason, "the signal's reason is the error the call rejects with").to.equal(seen.error);
        expect(seen.error.cause, 'the driver error is kept as cause').to.not.equal(undefined);
        expect(seen.rejectedAt! - seen.killStartedAt, 'ms from kill to rejection').to.be.below(2000);
        // (c) nothing of the lock's transaction committed; the write after the loss failed by name
        expect(await h().count(`${tag}-before`)).to.equal(kind.transactional ? 0 : 1);
        expect(seen.after, 'a write after the loss fails').to.be.instanceOf(LockLostError);
        expect(await h().count(`${tag}-after`)).to.equal(0);
        // (d) the next holder got in; the body heeding the signal stopped (within the detection time: below the control's overlap)
        expect(seen.gotAt, 'the waiter got the lock').to.be.a('number');
        expect(seen.stoppedAt! - seen.gotAt!, 'ms the first body ran on after the next holder got in').to.be.below(HEED_BOUND_MS);
      });

      it('control: a body ignoring the signal keeps running after the next holder got in (the call still rejects, its write still fails)', async function () {
        const tag = `${kind.title.replace(/\W+/g, '')}-ctl`.slice(0, 40);
        const seen = await killHolder(h(), kind, false, tag);
        expect(seen.error).to.be.instanceOf(LockLostError);
        expect(seen.gotAt, 'the waiter got the lock').to.be.a('number');
        expect(seen.stoppedAt! - seen.gotAt!, 'the overlap without the signal').to.be.at.least(HEED_BOUND_MS);
        expect(seen.after).to.be.instanceOf(LockLostError);
        expect(await h().count(`${tag}-after`)).to.equal(0);
      });
    });
  }

  describe('a statement cancelled while waiting for a lock', () => {
    /** Holds a lock (holdLock), starts a second caller waiting for it (waitLock), cancels that caller's statement: its error. */
    async function cancelledWait(holdLock: (held: () => void, release: Promise<void>) => Promise<unknown>, waitLock: () => Promise<unknown>): Promise<any> {
      const held = deferred();
      const release = deferred();
      const holder = outside(() => holdLock(held.resolve, release.promise));
      try {
        await held.promise;
        const before = new Set(await lockWaiters(h().name));
        const waiter = rejection(outside(waitLock));
        let ids: number[] = [];
        const end = Date.now() + 10_000;
        while (!ids.length && Date.now() < end) {
          ids = (await lockWaiters(h().name)).filter((id) => !before.has(id));
          if (!ids.length) await sleep(50);
        }
        expect(ids, 'one waiter seen by the server').to.have.length(1);
        await cancelStatement(h().name, ids[0]);
        return await waiter;
      } finally {
        release.resolve();
        await holder;
      }
    }

    it('an advisory lock wait cancelled (pg_cancel_backend / KILL QUERY) is a LockTimeoutError, not a raw driver error', async () => {
      const key = `lost-${h().orm}-cancel`;
      const err = await cancelledWait(
        (held, release) => withAdvisoryLock(key, async () => (held(), await release), { scope: 'session' }),
        () => withAdvisoryLock(key, async () => 'ran', { scope: 'session' }),
      );
      expect(err).to.be.instanceOf(LockTimeoutError);
      expect(String(err.message)).to.match(/Lock wait cancelled/);
    });

    it('a row lock wait cancelled is a LockTimeoutError, not a raw driver error', async () => {
      const target = await h().seed('cancel-target');
      const err = await cancelledWait(
        async (held, release) => withLock(await h().load(target), async () => (held(), await release)),
        async () => withLock(await h().load(target), async () => 'ran'),
      );
      expect(err).to.be.instanceOf(LockTimeoutError);
      expect(String(err.message)).to.match(/Lock wait cancelled/);
    });
  });
}

describeEachBackend('a lost connection (TypeORM)', [LcRow], (env) => {
  const harness: Harness = {
    get name() {
      return env.name;
    },
    orm: 'typeorm',
    seed: async (note) => (await env.ds.getRepository(LcRow).save({ note })).id,
    load: (id) => env.ds.getRepository(LcRow).findOneByOrFail({ id }),
    read: (id) => env.ds.getRepository(LcRow).findOneBy({ id }),
    write: async (note) => {
      await env.ds.getRepository(LcRow).insert({ note });
    },
    connectionId: () => connectionOfBody(env.name, env.ds),
    count: (note) => env.ds.getRepository(LcRow).countBy({ note }),
  };
  scenarios(() => harness);
});

describeEachMikroBackend('a lost connection', [MkLcRow], (env) => {
  const em = () => currentManager(env.orm) as EntityManager;
  const harness: Harness = {
    get name() {
      return env.name;
    },
    orm: 'mikro-orm',
    seed: async (note) => {
      const fork = env.orm.em.fork();
      const row = fork.create(MkLcRow, { note });
      await fork.flush();
      return row.id;
    },
    load: (id) => env.orm.em.fork().findOneOrFail(MkLcRow, id),
    read: (id) => em().findOne(MkLcRow, id),
    write: async (note) => {
      await em().insert(MkLcRow, { note });
    },
    connectionId: () => connectionOfBody(env.name, env.orm),
    count: (note) => env.orm.em.fork().count(MkLcRow, { note }),
  };
  scenarios(() => harness);
});
