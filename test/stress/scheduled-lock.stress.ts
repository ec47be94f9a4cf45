import {
  schedParent,
  startSchedWorker,
  stopSchedWorkers,
  ticksRunOnce,
  type SchedParent,
  type SchedStorage,
  type SchedWorker,
} from '../support/scheduled-workers';

/**
 * The full scheduled-lock run: 5 processes fire one job every 200 ms for 10 s (50 ticks) on each
 * storage; every tick runs exactly once, the control without the lock runs each tick 5 times.
 * (`npm test` runs the same with 12 ticks: test/scheduled-lock.test.ts.)
 */
describe('stress: scheduled locks, 5 processes × 10 s', function () {
  this.timeout(600_000);
  const workers: SchedWorker[] = [];
  let parent: SchedParent;

  before(async () => {
    parent = await schedParent(`schedstress${process.pid}`);
    for (let i = 0; i < 5; i++) workers.push(startSchedWorker(i, `schedstress${process.pid}`));
    await Promise.all(workers.map((w) => w.next((m) => m.ready)));
  });

  after(async () => {
    await stopSchedWorkers(workers);
    await parent?.close();
  });

  for (const storage of ['postgres', 'mariadb', 'redis'] as SchedStorage[]) {
    it(`[${storage}] 50 ticks of 200 ms: each runs exactly once; the control runs each 5 times`, async function () {
      if (!parent.available(storage)) this.skip();
      await ticksRunOnce(workers, parent, storage, 50);
    });
  }
});
