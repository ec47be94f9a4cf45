import { expect } from 'chai';
import { withScheduledLock } from '../src';
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

/*
 * Scheduled locks across processes: ticks, a holder killed with SIGKILL, clocks 2 s apart. What
 * decides here is the lock's statement and the storage's clock, not the ORM's version, so the
 * matrix runs this file once (scripts/test-matrix.js); the in-process cases, which go through the
 * ORM, are in test/scheduled-lock.test.ts and run on every TypeORM version.
 */

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const STORAGES: SchedStorage[] = ['postgres', 'mariadb', 'redis'];
const NS = `schedp${process.pid}`;

let parent: SchedParent;
const storageOptions = (storage: SchedStorage) => parent.storageOptions(storage);
const runsOf = (storage: SchedStorage, job: string) => parent.runsOf(storage, job);
const available = (storage: SchedStorage) => parent.available(storage);

describe('scheduled locks', () => {
  before(async () => {
    parent = await schedParent(NS);
  });

  after(() => parent?.close());

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
