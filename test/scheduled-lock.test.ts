import { expect } from 'chai';
import { LockConfigError, LockLostError, ScheduledLock, currentLockSignal, transaction, withScheduledLock } from '../src';
import { installLocking as installMikro } from '../src/orm/mikro-orm';
import { createScheduledLockTable } from '../src';
import { MkOrder, MkUser } from './fixtures/mikro-billing';
import { BACKENDS } from './support/backends';
import { createMikroOrm } from './support/mikro-suite';
import { outside } from './support/outside';
import {
  runTicks,
  schedParent,
  ticksRunOnce,
  startSchedWorker,
  stopSchedWorkers,
  type SchedParent,
  type SchedStorage,
  type SchedWorker,
} from './support/scheduled-workers';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const STORAGES: SchedStorage[] = ['postgres', 'mariadb', 'redis'];
const NS = `sched${process.pid}`;

let parent: SchedParent;
const storageOptions = (storage: SchedStorage) => parent.storageOptions(storage);
const runsOf = (storage: SchedStorage, job: string) => parent.runsOf(storage, job);
const available = (storage: SchedStorage) => parent.available(storage);

describe('scheduled locks', () => {
  before(async () => {
    parent = await schedParent(NS);
  });

  after(() => parent?.close());

  describe('withScheduledLock / @ScheduledLock (in one process)', () => {
    for (const storage of STORAGES) {
      describe(`[${storage}]`, () => {
        before(function () {
          if (!available(storage)) this.skip();
        });

        it('runs when free and resolves { ran: true, result }; a call while it runs is skipped ({ ran: false }), not queued; lockAtLeastFor keeps it taken after a fast run', async () => {
          const name = `once-${storage}-${Date.now()}`;
          const opts = { lockAtMostFor: 5_000, lockAtLeastFor: 600, ...storageOptions(storage) };
          let inside = false;
          const first = withScheduledLock(name, opts, async () => {
            inside = true;
            await sleep(150);
            return 42;
          });
          while (!inside) await sleep(5);
          expect(await withScheduledLock(name, opts, () => 'second')).to.deep.equal({ ran: false });
          expect(await first).to.deep.equal({ ran: true, result: 42 });
          // finished after ~150 ms, but taken for 600 ms from its start
          expect(await withScheduledLock(name, opts, () => 'too soon')).to.deep.equal({ ran: false });
          await sleep(650);
          expect(await withScheduledLock(name, opts, () => 'next tick')).to.deep.equal({ ran: true, result: 'next tick' });
        });

        it('without lockAtLeastFor the lock is free as soon as the run ends; a throwing run frees it too and rejects with its error', async () => {
          const name = `free-${storage}-${Date.now()}`;
          const opts = { lockAtMostFor: 5_000, ...storageOptions(storage) };
          expect(await withScheduledLock(name, opts, () => 1)).to.deep.equal({ ran: true, result: 1 });
          const err = await withScheduledLock(name, opts, () => {
            throw new Error('job failed');
          }).then(
            () => null,
            (e) => e,
          );
          expect(err.message).to.equal('job failed');
          expect(await withScheduledLock(name, opts, () => 2)).to.deep.equal({ ran: true, result: 2 });
        });

        it('the run gets the lock signal (currentLockSignal() and ctx.signal); it aborts when lockAtMostFor passes while the job still runs, and the call rejects with LockLostError', async () => {
          const name = `signal-${storage}-${Date.now()}`;
          let abortedAfter = -1;
          const started = Date.now();
          const err = await withScheduledLock(name, { lockAtMostFor: 300, ...storageOptions(storage) }, async (ctx) => {
            expect(currentLockSignal()).to.equal(ctx.signal);
            expect(ctx.token > 0n).to.equal(true);
            await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
            abortedAfter = Date.now() - started;
            return 'late';
          }).then(
            () => null,
            (e) => e,
          );
          expect(err).to.be.instanceOf(LockLostError);
          expect(err.message).to.match(/lockAtMostFor \(300 ms\) passed/);
          expect(abortedAfter).to.be.within(200, 1_500);
        });

        it("called inside a transaction: the lock is taken outside it, at once — another caller skips without waiting for the COMMIT, and the transaction's rollback keeps the run's lock", async () => {
          const name = `in-tx-${storage}-${Date.now()}`;
          const opts = { lockAtMostFor: 5_000, lockAtLeastFor: 1_000, ...storageOptions(storage) };
          const dataSource = parent.sources.get(storage === 'redis' ? 'postgres' : storage);
          let other: unknown;
          let otherMs = -1;
          const err = await transaction(
            async () => {
              const run = await withScheduledLock(name, opts, async () => {
                const t0 = Date.now();
                other = await outside(() => withScheduledLock(name, opts, () => 'other'));
                otherMs = Date.now() - t0;
                return 'inside';
              });
              expect(run).to.deep.equal({ ran: true, result: 'inside' });
              throw new Error('rolled back');
            },
            { dataSource },
          ).then(
            () => null,
            (e) => e,
          );
          expect(err.message).to.equal('rolled back');
          expect(other).to.deep.equal({ ran: false });
          expect(otherMs).to.be.below(1_000); // not queued behind the transaction
          expect(await withScheduledLock(name, opts, () => 'after the rollback')).to.deep.equal({ ran: false }); // lockAtLeastFor still holds it
        });

        it('@ScheduledLock: a skipped call resolves undefined', async () => {
          const name = `decorated-${storage}-${Date.now()}`;
          class Jobs {
            runs = 0;
            @ScheduledLock(name, { lockAtMostFor: 5_000, ...storageOptions(storage) })
            async report(ms: number) {
              this.runs++;
              await sleep(ms);
              return 'sent';
            }
          }
          const jobs = new Jobs();
          const [a, b] = await Promise.all([jobs.report(200), sleep(50).then(() => jobs.report(0))]);
          expect([a, b]).to.deep.equal(['sent', undefined]);
          expect(jobs.runs).to.equal(1);
        });
      });
    }

    it('bad options are a LockConfigError before anything is sent', async () => {
      const bad: any[] = [
        ['', { lockAtMostFor: 1000 }],
        ['job', {}],
        ['job', { lockAtMostFor: 0 }],
        ['job', { lockAtMostFor: 1000, lockAtLeastFor: 2000 }],
        ['job', { lockAtMostFor: 1000, lockAtMostfor: 5 }],
        ['job', { lockAtMostFor: 1000, redlock: {} }],
        ['job', { lockAtMostFor: 1000, dataSource: parent.sources.get('postgres'), table: 'no such; table' }],
      ];
      for (const [name, opts] of bad) {
        const err = await withScheduledLock(name, opts, () => 1).then(
          () => null,
          (e) => e,
        );
        expect(err, JSON.stringify([name, Object.keys(opts)])).to.be.instanceOf(LockConfigError);
      }
      expect(() => ScheduledLock('job', { lockAtMostFor: -1 })).to.throw(LockConfigError);
    });

    for (const backend of BACKENDS) {
      it(`[mikro-orm, ${backend}] database storage on an installed MikroORM instance: createScheduledLockTable(orm), runs, skips while held`, async function () {
        const orm = await createMikroOrm(backend, [MkUser, MkOrder], { fresh: false });
        if (!orm) return this.skip();
        const handle = await installMikro(orm);
        try {
          await createScheduledLockTable(orm);
          const name = `mikro-${backend}-${Date.now()}`;
          const opts = { lockAtMostFor: 5_000, lockAtLeastFor: 300, dataSource: orm };
          expect(await withScheduledLock(name, opts, (ctx) => `run ${ctx.token}`)).to.deep.equal({ ran: true, result: 'run 1' });
          expect(await withScheduledLock(name, opts, () => 'again')).to.deep.equal({ ran: false });
          await sleep(350);
          expect(await withScheduledLock(name, opts, (ctx) => `run ${ctx.token}`)).to.deep.equal({ ran: true, result: 'run 2' });
        } finally {
          handle.uninstall();
          await orm.close(true);
        }
      });
    }

    it('a missing lock table is a LockConfigError that says how to create it', async function () {
      if (!parent.sources.has('postgres')) this.skip();
      const err = await withScheduledLock(
        'job',
        { lockAtMostFor: 1000, dataSource: parent.sources.get('postgres'), table: 'no_such_scheduled_table' },
        () => 1,
      ).then(
        () => null,
        (e) => e,
      );
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(/createScheduledLockTable/);
    });
  });

  describe('scheduled locks across processes', function () {
    const workers: SchedWorker[] = [];
    /** One process per storage to be killed while it holds a job, started with the others (a ts-node start each). */
    const holders = new Map<SchedStorage, SchedWorker>();

    before(async function () {
      this.timeout(300_000); // eight ts-node processes starting at once on a loaded machine
      if (!parent.sources.size) this.skip();
      for (let i = 0; i < 5; i++) workers.push(startSchedWorker(i, NS));
      STORAGES.forEach((storage, i) => holders.set(storage, startSchedWorker(9 + i, NS)));
      await Promise.all([...workers, ...holders.values()].map((w) => w.next((m) => m.ready)));
    });

    after(() => stopSchedWorkers([...workers, ...holders.values()]));

    for (const storage of STORAGES) {
      describe(`[${storage}]`, () => {
        before(function () {
          if (!available(storage)) this.skip();
        });

        it('5 processes fire one job every 200 ms (12 ticks): each tick runs exactly once; the control without the lock runs ticks several times', async function () {
          this.timeout(300_000);
          const ticks = 12;
          await ticksRunOnce(workers, parent, storage, ticks);
        });

        it('a holder killed with SIGKILL frees the job after lockAtMostFor (2 s), within 600 ms', async function () {
          const name = `killed-${storage}-${Date.now()}`;
          const lockAtMostFor = 2_000;
          this.timeout(300_000);
          const holder = holders.get(storage)!;
          try {
            holder.send({ cmd: 'hold', storage, name, lockAtMostFor });
            await holder.next((m) => m.holding);
            const heldSince = Date.now(); // at or after the holder took it
            holder.child.kill('SIGKILL');
            await holder.exited;
            let skipped = 0;
            let freedAfter = -1;
            while (Date.now() - heldSince < lockAtMostFor + 3_000) {
              const r = await withScheduledLock(name, { lockAtMostFor: 5_000, ...storageOptions(storage) }, () => 'mine');
              if (r.ran) {
                freedAfter = Date.now() - heldSince;
                break;
              }
              skipped++;
              await sleep(20);
            }
            console.log(`    freed ${freedAfter} ms after the holder reported holding (lockAtMostFor ${lockAtMostFor})`);
            expect(skipped).to.be.greaterThan(0);
            expect(freedAfter).to.be.within(lockAtMostFor - 400, lockAtMostFor + 600);
          } finally {
            await stopSchedWorkers([holder]);
          }
        });

        it("two instances whose clocks differ by 2 s run each tick once (the storage's clock decides); the control runs each tick twice", async () => {
          const locked = `skew-${storage}-${Date.now()}`;
          const control = `${locked}-control`;
          const pair = workers.slice(0, 2);
          const answers = await runTicks(pair, {
            storage,
            jobs: [
              { name: locked, locked: true },
              { name: control, locked: false },
            ],
            periodMs: 2_600,
            ticks: 2,
            lockAtMostFor: 10_000,
            lockAtLeastFor: 2_300,
            jobMs: 30,
            skewMs: [0, 2_000], // the second instance's clock is 2 s ahead: it fires each tick 2 s early
            startAt: Date.now() + 2_500, // the early instance fires its first tick 500 ms from now
          });
          const runs = await runsOf(storage, locked);
          expect([...runs.entries()].sort()).to.deep.equal([
            [0, 1],
            [1, 1],
          ]);
          expect([...(await runsOf(storage, control)).entries()].sort()).to.deep.equal([
            [0, 2],
            [1, 2],
          ]);
          expect(answers.map((a) => a.skipped)).to.deep.equal([2, 0]); // the early one ran both, the other skipped both
        });
      });
    }
  });
});
