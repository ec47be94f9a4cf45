import { expect } from 'chai';
import { LockConfigError, LockLostError, ScheduledLock, currentLockSignal, transaction, withScheduledLock } from '../src';
import { installLocking as installMikro } from '../src/orm/mikro-orm';
import { createScheduledLockTable } from '../src';
import { MkOrder, MkUser } from './fixtures/mikro-billing';
import { BACKENDS } from './support/backends';
import { createMikroOrm } from './support/mikro-suite';
import { outside } from './support/outside';
import { schedParent, type SchedParent, type SchedStorage } from './support/scheduled-workers';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const STORAGES: SchedStorage[] = ['postgres', 'mariadb', 'redis'];
const NS = `sched${process.pid}`;

let parent: SchedParent;
const storageOptions = (storage: SchedStorage) => parent.storageOptions(storage);
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
});
