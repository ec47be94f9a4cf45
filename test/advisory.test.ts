import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { DataSource } from 'typeorm';
import {
  AdvisoryLock,
  DeadlockError,
  LockConfigError,
  LockLostError,
  LockNotAvailableError,
  LockTimeoutError,
  advisoryKeys,
  advisoryLockExists,
  advisoryLockId,
  installLocking,
  transaction,
  withAdvisoryLock,
  withAdvisoryLocks,
  type AdvisoryLockOptions,
} from '../src';
import { runInFrame } from '../src/context/store';
import type { LockEvent } from '../src';
import { boundedLockName, resolveAdvisoryKey } from '../src/locks/advisory-key';
import { Barrier, race } from '../src/testing';
import { AdvisoryBilling } from './fixtures/advisory-billing';
import { AdvisoryDoc, PlainDoc, SectionRecorder, overlaps } from './fixtures/advisory-entities';
import { BillOrder, BillUser } from './fixtures/billing';
import { createDataSource } from './support/backends';
import { describeEachBackend, sleep } from './support/suite';
import { deferred } from './support/outside';

/** The advisory namespace of this test process: names on a shared MariaDB server never collide with another run's. */
const NS = `adv-${process.env.ORMLOCK_TEST_DB}`;
const ROOT = path.resolve(__dirname, '..');

/** Runs `fn` outside any ambient transaction or held lock (like another request). */
function outside<T>(fn: () => Promise<T>): Promise<T> {
  return runInFrame({ txs: new Map(), values: new Map() }, fn);
}

/** Fails (instead of hanging the run) when `p` does not settle within `ms`. */
function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms (hang)`)), ms))),
  ]);
}

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e) => e,
  );

// -------------------------------------------------------------------------------------------
// worker processes

interface Worker {
  child: ChildProcess;
  /** The next message (not consumed before) that satisfies `pred`. */
  next(pred: (msg: any) => boolean): Promise<any>;
  send(command: object): void;
  exited: Promise<number | null>;
}

function startWorker(backend: string): Worker {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-r', 'reflect-metadata', 'test/fixtures/advisory-worker.ts', backend], {
    cwd: ROOT,
    env: { ...process.env, ADV_NAMESPACE: NS },
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
    for (const w of [...waiters]) {
      if (msg.error) w.reject(new Error(`worker failed: ${msg.error}`));
      else if (w.pred(msg)) w.resolve(msg);
      else continue;
      waiters.splice(waiters.indexOf(w), 1);
      return;
    }
    messages.push(msg);
  });
  void exited.then((code) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`worker exited with ${code} before answering`));
  });
  return {
    child,
    exited,
    send: (command) => child.stdin!.write(`${JSON.stringify(command)}\n`),
    next: (pred) => {
      const found = messages.find((m) => m.error || pred(m));
      if (found?.error) return Promise.reject(new Error(`worker failed: ${found.error}`));
      if (found) {
        messages.splice(messages.indexOf(found), 1);
        return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => waiters.push({ pred, resolve, reject }));
    },
  };
}

// -------------------------------------------------------------------------------------------

describe('advisory lock keys', () => {
  it('one stable 64-bit key: first 8 bytes of SHA-256("ormlock:advisory:v1" NUL namespace NUL canonical), signed', () => {
    // reference values computed independently (Python hashlib)
    expect(resolveAdvisoryKey('s3-worker', '', 'test').int64).to.equal(-5447405247200436688n);
    expect(resolveAdvisoryKey(['charge', 5], 'shop', 'test').int64).to.equal(3839165921431975151n);
    expect(resolveAdvisoryKey(1, '', 'test').int64).to.equal(2477434963605909955n);
    expect(resolveAdvisoryKey('1', '', 'test').int64).to.equal(7243278471011148114n);
  });

  it("type-tagged: 1 and '1' differ, 1 and 1n are the same, a composite differs from its joined text", () => {
    const k = (key: unknown, ns = '') => resolveAdvisoryKey(key, ns, 'test').int64;
    expect(k(1)).to.not.equal(k('1'));
    expect(k(1)).to.equal(k(1n));
    expect(k(2 ** 60)).to.equal(k(2n ** 60n));
    expect(k(['a', 1])).to.not.equal(k(['a', '1']));
    expect(k(['a', 'b'])).to.not.equal(k('a,b'));
    expect(k(['a', 'b'])).to.not.equal(k(['b', 'a']));
    expect(k('x', 'app1')).to.not.equal(k('x', 'app2'));
  });

  it('GET_LOCK names: plain when short, else ≤ 64 bytes with a readable prefix and the hash', () => {
    const name = (key: unknown, ns = '') => boundedLockName(resolveAdvisoryKey(key, ns, 'test'));
    expect(name('charge:5', 'shop')).to.equal('shop:charge:5');
    const long = name('x'.repeat(10_000));
    expect(Buffer.byteLength(long)).to.be.at.most(64);
    expect(long).to.match(/^x+#[0-9a-f]{16}$/);
    expect(name('😀'.repeat(40)).length).to.be.greaterThan(17);
    expect(Buffer.byteLength(name('😀'.repeat(40)))).to.be.at.most(64);
    expect(name(1)).to.not.equal(name('1'));
    expect(name(1)).to.match(/^1#[0-9a-f]{16}$/);
    expect(name('a#b')).to.match(/^a_b#[0-9a-f]{16}$/);
    expect(name('a_b')).to.equal('a_b');
    expect(name('y'.repeat(64))).to.equal('y'.repeat(64));
    expect(name('y'.repeat(65))).to.not.equal(name('y'.repeat(66)));
  });
});

describeEachBackend(
  'advisory locks',
  [BillUser, BillOrder, AdvisoryDoc, PlainDoc],
  (env) => {
    const connectionId = async (run: (sql: string) => Promise<any[]>) => Number((await run(env.handle.dialect.connectionIdSql))[0].connectionId);

    /** Holds `key` in another async context (its own connection) until release() is called. */
    async function holdElsewhere(key: Parameters<typeof withAdvisoryLock>[0], options: AdvisoryLockOptions = {}) {
      const held = deferred<number>();
      const release = deferred();
      const done = outside(() =>
        withAdvisoryLock(
          key,
          async ({ queryRunner }) => {
            held.resolve(await connectionId((sql) => queryRunner.query(sql)));
            await release.promise;
          },
          { scope: 'session', ...options },
        ),
      );
      done.catch(() => undefined);
      const holderId = await held.promise;
      return { holderId, release: () => (release.resolve(), done) };
    }

    /** Two worker processes of this backend, started once (by the first test that needs them) and quit after the last. */
    let started: Worker[] = [];
    let pair: Promise<Worker[]> | undefined;
    const twoWorkers = () =>
      (pair ??= (async () => {
        started = [0, 1].map(() => startWorker(env.name));
        await Promise.all(started.map((w) => w.next((m) => m.ready)));
        return started;
      })());
    after(async function () {
      this.timeout(30_000);
      if (!started.length) return;
      try {
        for (const w of started) w.send({ cmd: 'quit' });
        expect(await Promise.all(started.map((w) => w.exited)), 'the workers quit cleanly').to.deep.equal([0, 0]);
      } finally {
        for (const w of started) if (w.child.exitCode === null) w.child.kill();
      }
    });

    it('two processes × concurrent calls: 50 @AdvisoryLock("s3-worker") jobs never overlap (control without the lock does)', async function () {
      this.timeout(120_000);
      const dir = mkdtempSync(path.join(os.tmpdir(), 'ormlock-adv-'));
      try {
        const workers = await twoWorkers();
        async function run(locked: boolean) {
          const file = path.join(dir, `${locked ? 'locked' : 'control'}.jsonl`);
          writeFileSync(file, '');
          // the barrier: both processes are connected and installed, and start at the same instant
          const startAt = Date.now() + 300;
          for (const w of workers) w.send({ cmd: 'jobs', locked, count: 25, concurrency: 5, file, startAt });
          const done = await Promise.all(workers.map((w) => w.next((m) => m.done)));
          expect(done.reduce((n, d) => n + d.jobs, 0)).to.equal(50);
          const sections = readFileSync(file, 'utf8')
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l));
          expect(sections).to.have.length(50);
          expect(new Set(sections.map((s) => s.pid)).size, 'both processes ran jobs').to.equal(2);
          return overlaps(sections);
        }
        expect((await run(false)).length, 'the control without the lock must overlap').to.be.greaterThan(0);
        expect(await run(true)).to.deep.equal([]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('charge_user_for_order under @AdvisoryLock(userId => `charge:${userId}`): 20 concurrent charges leave exact credits', async () => {
      const N = 20;
      const users = env.ds.getRepository(BillUser);
      const orders = env.ds.getRepository(BillOrder);
      const billing = new AdvisoryBilling(users, orders);
      async function run(method: 'charge' | 'chargeUnlocked') {
        const user = await users.save(users.create({ credits: 1000 }));
        const ids: number[] = [];
        for (let i = 0; i < N; i++) ids.push((await orders.save(orders.create({ userId: user.id, price: 10 }))).id);
        const results = await race(N, (i) => billing[method](user.id, ids[i]));
        expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).to.deep.equal([]);
        return (await users.findOneByOrFail({ id: user.id })).credits;
      }
      expect(await run('chargeUnlocked'), 'control: lost updates without the lock').to.be.greaterThan(1000 - N * 10);
      expect(await run('charge')).to.equal(1000 - N * 10);
    });

    describe('timeouts', () => {
      it('timeoutMs: 0 on a held key throws LockNotAvailableError at once', async () => {
        const holder = await holdElsewhere('t0');
        try {
          for (const scope of ['transaction', 'session'] as const) {
            const started = Date.now();
            let ran = false;
            const err = await rejection(withAdvisoryLock('t0', async () => (ran = true), { timeoutMs: 0, scope }));
            expect(err, scope).to.be.instanceOf(LockNotAvailableError);
            expect(err.key).to.equal('t0');
            expect(ran).to.equal(false);
            expect(Date.now() - started).to.be.lessThan(1000);
          }
        } finally {
          await holder.release();
        }
        expect(await withAdvisoryLock('t0', async () => 'free', { timeoutMs: 0 })).to.equal('free');
      });

      it("onTimeout: 'skip' does not run the body and returns undefined (a caller's transaction stays usable)", async () => {
        class Job {
          runs = 0;
          @AdvisoryLock('skip-me', { timeoutMs: 0, onTimeout: 'skip' })
          async run() {
            this.runs += 1;
            return 'ran';
          }
          @AdvisoryLock('skip-me', { timeoutMs: 200, onTimeout: 'skip', scope: 'session' })
          async runWaiting() {
            this.runs += 1;
            return 'ran';
          }
        }
        const job = new Job();
        const holder = await holdElsewhere('skip-me');
        try {
          expect(await job.run()).to.equal(undefined);
          expect(await job.runWaiting()).to.equal(undefined);
          expect(job.runs).to.equal(0);
          const users = env.ds.getRepository(BillUser);
          await transaction(async () => {
            expect(await job.run()).to.equal(undefined);
            expect(await withAdvisoryLock('skip-me', async () => 'x', { timeoutMs: 200, onTimeout: 'skip' })).to.equal(undefined);
            expect(await withAdvisoryLock('skip-me', async () => 'x', { timeoutMs: 200, onTimeout: 'skip', scope: 'session' })).to.equal(undefined);
            // the transaction is still usable after the timeouts (PostgreSQL: they ran in a savepoint)
            await users.save(users.create({ credits: 7 }));
          });
        } finally {
          await holder.release();
        }
        expect(await job.run()).to.equal('ran');
      });

      it('timeoutMs: 300 on a held key throws LockTimeoutError after ~300 ms (PostgreSQL: naming the holder pid)', async () => {
        const holder = await holdElsewhere('t300');
        try {
          for (const scope of ['transaction', 'session'] as const) {
            const err = await rejection(withAdvisoryLock('t300', async () => 'ran', { timeoutMs: 300, scope }));
            expect(err, scope).to.be.instanceOf(LockTimeoutError);
            expect(err.waitedMs).to.be.at.least(250).and.below(3000);
            if (env.handle.dialect.advisory.describeHolders) expect(err.blockerPid).to.equal(holder.holderId);
          }
          // lock_timeout was restored: a row-lock-free statement in a later transaction has no limit left over
          await transaction(async () => {
            await rejection(withAdvisoryLock('t300', async () => 'ran', { timeoutMs: 50 }));
            if (env.name === 'postgres') expect((await env.ds.query(`SELECT current_setting('lock_timeout') AS t`))[0].t).to.equal('0');
          });
        } finally {
          await holder.release();
        }
      });
    });

    it('shared locks: two shared holders at once, an exclusive one waits for both (PostgreSQL) / LockConfigError (no shared advisory locks)', async () => {
      if (!env.handle.dialect.capabilities.sharedAdvisoryLocks) {
        const err = await rejection(withAdvisoryLock('sh', async () => 'ran', { shared: true }));
        expect(err).to.be.instanceOf(LockConfigError);
        expect(err.message).to.contain('withAdvisoryLock').and.contain('shared');
        class Reader {
          @AdvisoryLock('sh', { shared: true })
          async read() {
            return 'ran';
          }
        }
        const err2 = await rejection(new Reader().read());
        expect(err2).to.be.instanceOf(LockConfigError);
        expect(err2.message).to.contain('Reader.read');
        return;
      }
      const bothIn = new Barrier(3);
      const releases = [deferred(), deferred()];
      const readers = [0, 1].map((i) =>
        outside(() =>
          withAdvisoryLock(
            'sh',
            async () => {
              await bothIn.wait();
              await releases[i].promise;
            },
            { shared: true, scope: i === 0 ? 'session' : 'transaction' },
          ),
        ),
      );
      await within(5000, bothIn.wait(), 'both shared holders inside at once');
      expect(await rejection(outside(() => withAdvisoryLock('sh', async () => 'x', { timeoutMs: 0 })))).to.be.instanceOf(LockNotAvailableError);
      expect(await outside(() => withAdvisoryLock('sh', async () => 'third reader', { shared: true, timeoutMs: 0 }))).to.equal('third reader');
      let writerIn = 0;
      const writer = outside(() => withAdvisoryLock('sh', async () => (writerIn = Date.now())));
      await sleep(150);
      releases[0].resolve();
      await readers[0];
      await sleep(150);
      expect(writerIn, 'the writer still waits for the second reader').to.equal(0);
      const secondOut = Date.now();
      releases[1].resolve();
      await readers[1];
      await within(5000, writer, 'writer');
      expect(writerIn).to.be.at.least(secondOut);
      // a shared lock held by this context cannot be upgraded (it would deadlock with other readers)
      const upgrade = await rejection(withAdvisoryLock('sh', () => withAdvisoryLock('sh', async () => 'x'), { shared: true }));
      expect(upgrade).to.be.instanceOf(LockConfigError);
      expect(upgrade.message).to.contain('cannot be upgraded');
      // an exclusive one held makes a nested shared request a no-op
      expect(await withAdvisoryLock('sh', () => withAdvisoryLock('sh', async () => 'nested', { shared: true, timeoutMs: 0 }))).to.equal('nested');
    });

    it('lock events: acquired (with waited ms) and released, for both scopes', async () => {
      const events: LockEvent[] = [];
      const observer = { onLockEvent: (e: LockEvent) => events.push(e) };
      (env.handle.installation.observers as any[]).push(observer);
      try {
        await withAdvisoryLock('evt', async () => 'x');
        await withAdvisoryLock('evt', async () => 'x', { scope: 'session' });
        const holder = await holdElsewhere('evt');
        await rejection(withAdvisoryLock('evt', async () => 'x', { timeoutMs: 0 }));
        await holder.release();
      } finally {
        (env.handle.installation.observers as any[]).splice((env.handle.installation.observers as any[]).indexOf(observer), 1);
      }
      const mine = events.filter((e) => e.kind === 'advisory' && e.target === 'evt').map((e) => e.type);
      expect(mine.slice(0, 4)).to.deep.equal(['acquired', 'released', 'acquired', 'released']);
      expect(mine).to.include('not_available');
      expect(events.find((e) => e.type === 'acquired')!.waitedMs).to.be.a('number');
    });

    it('pool of size 1: 10 concurrent callers (session and transaction scope, nested) all finish, no hang', async function () {
      this.timeout(60_000);
      const ds1 = (await createDataSource(env.name, [], { fresh: false, poolSize: 1 })) as DataSource;
      const handle = await installLocking(ds1, { namespace: NS });
      try {
        const log: number[] = [];
        await within(
          30_000,
          Promise.all(
            Array.from({ length: 10 }, (_, i) =>
              withAdvisoryLock(
                'pool1',
                async ({ manager }) => {
                  await manager.query('SELECT 1');
                  // nested locks use the pinned connection: a session lock and a transaction
                  await withAdvisoryLock('pool1-inner', async (inner) => inner.manager.query('SELECT 1'), { scope: 'session', dataSource: ds1 });
                  await withAdvisoryLock('pool1-tx', async () => ds1.manager.query('SELECT 1'), { dataSource: ds1 });
                  expect(await advisoryLockExists('pool1', { dataSource: ds1 })).to.equal(true);
                  log.push(i);
                },
                { scope: 'session', dataSource: ds1 },
              ),
            ),
          ),
          'session-scoped callers on a pool of 1',
        );
        await within(
          30_000,
          Promise.all(
            Array.from({ length: 10 }, (_, i) =>
              withAdvisoryLock(
                'pool1',
                async () => {
                  await ds1.manager.query('SELECT 1');
                  log.push(i);
                },
                { dataSource: ds1 },
              ),
            ),
          ),
          'transaction-scoped callers on a pool of 1',
        );
        expect(log).to.have.length(20);
      } finally {
        handle.uninstall();
        await ds1.destroy();
      }
    });

    describe('a lost connection', () => {
      async function kill(id: number) {
        await outside(() =>
          env.ds.query(env.name === 'postgres' ? 'SELECT pg_terminate_backend($1)' : `KILL ${Number(id)}`, env.name === 'postgres' ? [id] : []),
        );
      }

      for (const scope of ['session', 'transaction'] as const) {
        it(`${scope} scope: killing the holder's connection gives it LockLostError and the next waiter gets the lock`, async () => {
          const held = deferred<number>();
          const killed = deferred();
          let carriedOn = false;
          const holder = outside(() =>
            withAdvisoryLock(
              'victim',
              async ({ queryRunner }) => {
                held.resolve(await connectionId((sql) => queryRunner.query(sql)));
                await killed.promise;
                await sleep(100);
                if (scope === 'transaction') await env.ds.query('SELECT 1'); // the body's own work, on the lost connection
                carriedOn = true;
              },
              { scope },
            ),
          );
          const id = await held.promise;
          let waiterRan = false;
          const waiter = outside(() => withAdvisoryLock('victim', async () => (waiterRan = true), { scope: 'session', timeoutMs: 15_000 }));
          await sleep(150);
          expect(waiterRan).to.equal(false);
          await kill(id);
          killed.resolve();
          const err = await rejection(holder);
          expect(err).to.be.instanceOf(LockLostError);
          expect(err.key).to.equal('victim');
          if (scope === 'transaction') expect(carriedOn).to.equal(false);
          await within(10_000, waiter, 'waiter');
          expect(waiterRan).to.equal(true);
          // the pool is healthy afterwards
          expect(await withAdvisoryLock('victim', async () => 'again', { scope })).to.equal('again');
        });
      }
    });

    it('callers locking [a, b] and [b, a] 100 times concurrently never deadlock (control: taking them in call order does)', async function () {
      this.timeout(60_000);
      // control: nested locks in the caller's own order, both holding their first one
      const bothHoldFirst = new Barrier(2);
      const control = await race(2, (i) => {
        const [first, second] = i === 0 ? ['dl-a', 'dl-b'] : ['dl-b', 'dl-a'];
        return withAdvisoryLock(first, async () => {
          await bothHoldFirst.wait();
          await withAdvisoryLock(second, async () => 'both', { timeoutMs: 3000 });
        });
      });
      const failures = control.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
      expect(failures.length, 'the control must deadlock (or time out)').to.be.greaterThan(0);
      expect(failures.every((e) => e instanceof DeadlockError || e instanceof LockTimeoutError)).to.equal(true);

      let inside = 0;
      let maxInside = 0;
      const results = await race(100, (i) =>
        withAdvisoryLocks(
          i % 2 ? ['dl-a', 'dl-b'] : ['dl-b', 'dl-a'],
          async ({ keys }) => {
            inside += 1;
            maxInside = Math.max(maxInside, inside);
            await sleep(1);
            inside -= 1;
            return keys;
          },
          { scope: i % 4 < 2 ? 'transaction' : 'session' },
        ),
      );
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).to.deep.equal([]);
      expect(maxInside).to.equal(1);
      // one canonical order whatever the caller's order
      const orders = new Set(results.map((r) => JSON.stringify((r as PromiseFulfilledResult<string[]>).value)));
      expect(orders.size).to.equal(1);
    });

    it('the same string key from two processes is the same lock; advisoryLockExists sees it from another process', async function () {
      this.timeout(60_000);
      const [worker] = await twoWorkers(); // a process of the pair the jobs test ran on
      for (const scope of ['session', 'transaction']) {
        worker.send({ cmd: 'hold', key: 'cross-process', scope });
        const { id } = await worker.next((m) => m.held);
        expect(id, 'the same lock id in every process').to.equal(advisoryLockId('cross-process')[0]);
        expect(await advisoryLockExists('cross-process')).to.equal(true);
        expect(await advisoryLockExists('cross-process-other')).to.equal(false);
        expect(await rejection(withAdvisoryLock('cross-process', async () => 'x', { timeoutMs: 0 }))).to.be.instanceOf(LockNotAvailableError);
        worker.send({ cmd: 'release' });
        await worker.next((m) => m.released);
        expect(await advisoryLockExists('cross-process')).to.equal(false);
        expect(await withAdvisoryLock('cross-process', async () => 'mine', { timeoutMs: 0 })).to.equal('mine');
      }
    });

    it('round trips: a transaction-scoped lock is one statement and no release statement (PostgreSQL; MySQL: GET_LOCK + RELEASE_LOCK after COMMIT)', async () => {
      const work = () => env.ds.query('SELECT 1 AS one');
      env.log.start();
      await transaction(async () => {
        await work();
      });
      const unlocked = env.log.stop();
      env.log.start();
      await withAdvisoryLock('rt', async () => {
        await work();
      });
      const locked = env.log.stop();
      const extra = locked.filter((q) => !unlocked.includes(q));
      if (env.handle.dialect.capabilities.transactionAdvisoryLocks) {
        expect(locked.length).to.equal(unlocked.length + 1);
        expect(extra).to.have.length(1);
        expect(extra[0]).to.match(/pg_advisory_xact_lock/);
        expect(locked.join('\n')).to.not.match(/unlock/);
        expect(locked.indexOf(extra[0])).to.be.lessThan(locked.findIndex((q) => /SELECT 1 AS one/.test(q)));
      } else {
        expect(locked.length).to.equal(unlocked.length + 2);
        expect(extra.map((q) => q.match(/GET_LOCK|RELEASE_LOCK/)?.[0])).to.deep.equal(['GET_LOCK', 'RELEASE_LOCK']);
        expect(locked.indexOf(extra[1]), 'released after COMMIT').to.be.greaterThan(locked.indexOf('COMMIT'));
      }
      // a timeout adds no statement either (lock_timeout is set and restored inside the lock statement)
      env.log.start();
      await withAdvisoryLock(
        'rt',
        async () => {
          await work();
        },
        { timeoutMs: 1000 },
      );
      expect(env.log.stop().length).to.equal(locked.length);
      // a held key is not taken again (re-entry)
      env.log.start();
      await withAdvisoryLock('rt', () => withAdvisoryLock('rt', () => withAdvisoryLock('rt', work, { scope: 'session' })));
      expect(env.log.stop().length).to.equal(locked.length);
    });

    it("transaction scope joins the caller's transaction: held until it commits, released right after", async () => {
      for (const end of ['commit', 'rollback'] as const) {
        const err = await rejection(
          transaction(async () => {
            await withAdvisoryLock('joined', async () => 'body done');
            // the body returned, the transaction is still open: the lock is still held
            expect(await outside(() => advisoryLockExists('joined'))).to.equal(true);
            expect(await rejection(outside(() => withAdvisoryLock('joined', async () => 'x', { timeoutMs: 0 })))).to.be.instanceOf(LockNotAvailableError);
            if (end === 'rollback') throw new Error('roll back');
          }),
        );
        expect(err?.message ?? null).to.equal(end === 'rollback' ? 'roll back' : null);
        expect(await advisoryLockExists('joined')).to.equal(false);
      }
    });

    it('session scope: released in finally when the body throws, on the same connection', async () => {
      const err = await rejection(
        withAdvisoryLock(
          'boom',
          async () => {
            throw new Error('body failed');
          },
          { scope: 'session' },
        ),
      );
      expect(err.message).to.equal('body failed');
      expect(await advisoryLockExists('boom')).to.equal(false);
      // inside a transaction whose body error aborted it (PostgreSQL), the unlock waits for the rollback
      const err2 = await rejection(
        transaction(async () => {
          await withAdvisoryLock(
            'boom',
            async () => {
              await env.ds.query('SELECT * FROM no_such_table');
            },
            { scope: 'session' },
          );
        }),
      );
      expect(err2).to.be.instanceOf(Error);
      expect(await advisoryLockExists('boom')).to.equal(false);
    });

    it('entity-class @AdvisoryLock: concurrent saves of the same key serialize until commit (control overlaps)', async () => {
      SectionRecorder.sections = [];
      const docs = env.ds.getRepository(AdvisoryDoc);
      const plain = env.ds.getRepository(PlainDoc);
      await race(6, (i) => plain.save(plain.create({ slot: 1, n: i })));
      await race(6, (i) => docs.save(docs.create({ slot: 1, n: i })));
      const sections = SectionRecorder.sections;
      const control = sections.filter((s) => s.kind === 'PlainDoc');
      const locked = sections.filter((s) => s.kind === 'AdvisoryDoc');
      expect(control).to.have.length(6);
      expect(locked).to.have.length(6);
      expect(overlaps(control).length, 'control must overlap').to.be.greaterThan(0);
      expect(overlaps(locked)).to.deep.equal([]);
      // released at commit: the key is free once save() returned
      expect(await advisoryLockExists(['doc', 1])).to.equal(false);
      // held while the writing transaction is open, by the write's connection
      await transaction(async () => {
        const doc = await docs.save(docs.create({ slot: 2 }));
        expect(await outside(() => advisoryLockExists(['doc', 2]))).to.equal(true);
        doc.n = 5;
        await docs.save(doc); // update: re-entry, no second lock
        await docs.remove(doc);
      });
      expect(await advisoryLockExists(['doc', 2])).to.equal(false);
      // a method holding the key may write the entity (re-entry, no self-deadlock)
      await within(
        10_000,
        withAdvisoryLock(['doc', 3], () => docs.save(docs.create({ slot: 3 })), { scope: 'session' }),
        're-entry',
      );
    });

    it('keys with quotes, */, --, unicode and 10,000 characters are parameters, never SQL', async () => {
      const keys = ["it's", 'a"b', '*/ DROP TABLE adv_docs; --', '-- comment', 'ünïcødé 🚀 鍵', 'x'.repeat(10_000), ["o'k", 1n, -2, 1.5]];
      for (const key of keys) {
        for (const scope of ['transaction', 'session'] as const) {
          const held = await withAdvisoryLock(key as any, async () => outside(() => advisoryLockExists(key as any)), { scope });
          expect(held, `${String(key).slice(0, 20)} ${scope}`).to.equal(true);
        }
        expect(await advisoryLockExists(key as any)).to.equal(false);
      }
      expect(await env.ds.getRepository(AdvisoryDoc).count()).to.be.a('number');
    });

    describe('bad input', () => {
      class Svc {
        @AdvisoryLock((id: unknown) => id as any)
        async byArg(_id: unknown) {
          return 'ran';
        }
        @AdvisoryLock(() => {
          throw new Error('no key today');
        })
        async throwing() {
          return 'ran';
        }
        @AdvisoryLock((() => Promise.resolve('k')) as any)
        async asyncKey() {
          return 'ran';
        }
      }
      const svc = new Svc();
      const fn = async () => 'ran';
      const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
        ['empty string key', () => withAdvisoryLock('', fn), /withAdvisoryLock: invalid advisory lock key "": the key is an empty string/],
        ['null key', () => withAdvisoryLock(null as any, fn), /withAdvisoryLock: .*null/],
        ['undefined key', () => withAdvisoryLock(undefined as any, fn), /withAdvisoryLock: .*undefined/],
        ['object key', () => withAdvisoryLock({ id: 1 } as any, fn), /withAdvisoryLock: invalid advisory lock key an object/],
        ['empty array', () => withAdvisoryLock([], fn), /empty array/],
        ['nested array', () => withAdvisoryLock([['a']] as any, fn), /nested array/],
        ['NaN', () => withAdvisoryLock(NaN, fn), /not a finite number/],
        ['symbol', () => withAdvisoryLock(Symbol('k') as any, fn), /symbol/],
        ['no keys in advisoryKeys()', () => withAdvisoryLock(advisoryKeys(), fn), /no keys/],
        ['key function returning nothing', () => svc.byArg(undefined), /@AdvisoryLock on Svc\.byArg: the key function returned undefined/],
        ['key function returning an object', () => svc.byArg({}), /@AdvisoryLock on Svc\.byArg: invalid advisory lock key an object/],
        ['key function returning an empty string', () => svc.byArg(''), /@AdvisoryLock on Svc\.byArg: .*empty string/],
        ['key function that throws', () => svc.throwing(), /@AdvisoryLock on Svc\.throwing: the key function threw: no key today/],
        ['async key function', () => svc.asyncKey(), /@AdvisoryLock on Svc\.asyncKey: .*Promise/],
        ['unknown scope', () => withAdvisoryLock('k', fn, { scope: 'forever' as any }), /scope 'forever'/],
        ['negative timeoutMs', () => withAdvisoryLock('k', fn, { timeoutMs: -1 }), /timeoutMs must be a number ≥ 0/],
        ['unknown onTimeout', () => withAdvisoryLock('k', fn, { onTimeout: 'wait' as any }), /onTimeout 'wait'/],
        ['misspelt option', () => withAdvisoryLock('k', fn, { timeout: 5 } as any), /unknown option 'timeout'/],
        ['body not a function', () => withAdvisoryLock('k', 'nope' as any), /body must be a function/],
        ['advisoryLockExists of a key set', () => advisoryLockExists(advisoryKeys('a', 'b')), /advisoryLockExists: takes one key/],
      ];
      for (const [name, call, message] of cases) {
        it(`${name} → LockConfigError`, async () => {
          const err = await rejection(call());
          expect(err, name).to.be.instanceOf(LockConfigError);
          expect(err.message).to.match(message);
        });
      }
      expect(svc).to.be.an('object');

      it('decorator misuse is a LockConfigError when the class is defined', () => {
        const define = (body: () => unknown) => {
          try {
            body();
            return null;
          } catch (e) {
            return e as LockConfigError;
          }
        };
        const sync = define(() => {
          class A {
            @AdvisoryLock('k')
            run() {
              return 1;
            }
          }
          return A;
        });
        expect(sync).to.be.instanceOf(LockConfigError);
        expect(sync!.message).to.contain('A.run').and.contain('async');
        const badKey = define(() => {
          class B {
            @AdvisoryLock('')
            async run() {}
          }
          return B;
        });
        expect(badKey).to.be.instanceOf(LockConfigError);
        expect(badKey!.message).to.contain('B.run');
        expect(badKey!.method).to.equal('B.run');
        const badOption = define(() => {
          class C {
            @AdvisoryLock('k', { scope: 'global' as any })
            async run() {}
          }
          return C;
        });
        expect(badOption!.message).to.contain('C.run').and.contain("scope 'global'");
      });

      it('entity-class misuse is a LockConfigError at installLocking naming the entity', async () => {
        const { Entity, PrimaryGeneratedColumn } = await import('typeorm');
        const declare = (options: AdvisoryLockOptions) => {
          @AdvisoryLock((e: any) => `bad:${e.id}`, options)
          @Entity(`adv_bad_${Math.random().toString(36).slice(2, 8)}`)
          class BadDoc {
            @PrimaryGeneratedColumn() id!: number;
          }
          return BadDoc;
        };
        const problems: Array<[AdvisoryLockOptions, RegExp]> = [
          [{ scope: 'session' }, /scope 'session' is not possible on an entity class/],
          [{ onTimeout: 'skip' }, /onTimeout 'skip'/],
          [{ timeoutMs: -5 }, /timeoutMs/],
        ];
        if (!env.handle.dialect.capabilities.sharedAdvisoryLocks) problems.push([{ shared: true }, /shared advisory locks are not available/]);
        for (const [options, message] of problems) {
          const cls = declare(options);
          const ds = (await createDataSource(env.name, [cls], { fresh: false }))!;
          try {
            const err = await rejection(installLocking(ds));
            expect(err, JSON.stringify(options)).to.be.instanceOf(LockConfigError);
            expect(err.message).to.contain('@AdvisoryLock on BadDoc').and.match(message);
            expect(err.entity).to.equal('BadDoc');
          } finally {
            await ds.destroy();
          }
        }
      });
    });
  },
  { install: { namespace: NS }, subscribers: [SectionRecorder] },
);
