/**
 * A scope ends with its call: a timer scheduled inside a transaction, a row
 * lock or an advisory lock that runs after the call returned runs as outside — it takes the lock
 * afresh (so it never overlaps another holder) and uses the pool (save() works).
 *
 * Each lock case has a control: the same timer body without the lock overlaps the other holder,
 * which shows the race window is real.
 */
import { expect } from 'chai';
import { advisoryLockExists, inTransaction, transaction, withAdvisoryLock, withLock } from '../src';
import { runInFrame } from '../src/context/store';
import { EDGE_ENTITIES, EdgeAccount, sleep } from './fixtures/edges';
import { describeEachBackend } from './support/suite';

const outside = <T>(fn: () => Promise<T>) => runInFrame({ txs: new Map(), values: new Map() }, fn);

/** Counts bodies inside a critical section at once. */
class Section {
  inside = 0;
  max = 0;
  async run(ms: number, after?: () => void): Promise<void> {
    this.inside += 1;
    this.max = Math.max(this.max, this.inside);
    after?.();
    await sleep(ms);
    this.inside -= 1;
  }
}

/** A promise and its resolver. */
function gate(): { open: () => void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

/** Schedules `fn` with setTimeout from the current context; the promise settles with it. */
function later<T>(fn: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => setTimeout(() => fn().then(resolve, reject), 0));
}

describeEachBackend('edges: a scope ends with its call', EDGE_ENTITIES, (env) => {
  const accounts = () => env.ds.getRepository(EdgeAccount);

  for (const scope of ['transaction', 'session'] as const) {
    for (const locked of [true, false]) {
      it(`${locked ? '' : 'control: '}a timer scheduled inside withAdvisoryLock (${scope}) that runs after it ${locked ? 'takes the lock afresh: no overlap with the next holder' : 'without the lock overlaps the next holder'}`, async () => {
        const key = `edge-timer-${scope}-${locked}-${env.name}`;
        const section = new Section();
        const holderIn = gate();
        let timerAcquired: boolean | undefined;
        let timer!: Promise<void>;
        await withAdvisoryLock(
          key,
          async () => {
            // a job that reschedules itself from inside its lock
            timer = later(async () => {
              await holderIn.opened; // runs while another context holds the key
              if (!locked) return section.run(30);
              await withAdvisoryLock(
                key,
                async (ctx) => {
                  timerAcquired = ctx.acquired;
                  expect(await advisoryLockExists(key), 'the database holds the key for the timer').to.equal(true);
                  await section.run(30);
                },
                { scope },
              );
            });
          },
          { scope },
        );
        expect(await advisoryLockExists(key), 'released when the call returned').to.equal(false);
        const holder = outside(() => withAdvisoryLock(key, () => section.run(150, holderIn.open), { scope }));
        await Promise.all([holder, timer]);
        if (locked) {
          expect(timerAcquired, 'the timer took the lock itself').to.equal(true);
          expect(section.max, 'bodies inside the lock at once').to.equal(1);
        } else {
          expect(section.max, 'control: the race window is real').to.equal(2);
        }
      });
    }
  }

  for (const locked of [true, false]) {
    it(`${locked ? '' : 'control: '}a timer scheduled inside withLock(row) that runs after it ${locked ? 'locks the row afresh: no overlap with the next holder' : 'without the lock overlaps the next holder'}`, async () => {
      const a = await accounts().save(accounts().create({ name: `timer-row-${locked}`, credits: 10 }));
      const section = new Section();
      const holderIn = gate();
      let timer!: Promise<void>;
      await withLock(a, async () => {
        timer = later(async () => {
          await holderIn.opened;
          if (!locked) return section.run(30);
          await withLock(a, async (u) => {
            expect(inTransaction(), 'the timer runs in its own transaction').to.equal(true);
            await section.run(30);
            u.credits += 1;
            await accounts().save(u);
          });
        });
      });
      const holder = outside(() => withLock(a, () => section.run(150, holderIn.open)));
      await Promise.all([holder, timer]);
      expect(section.max).to.equal(locked ? 1 : 2);
      if (locked) expect((await accounts().findOneByOrFail({ id: a.id })).credits).to.equal(11);
    });
  }

  for (const via of ['transaction()', 'dataSource.transaction(cb)', "withAdvisoryLock(…, { scope: 'session' })"] as const) {
    it(`a timer scheduled inside ${via} that runs after it: save() works on the pool, outside any transaction, and commits`, async () => {
      let timer!: Promise<EdgeAccount>;
      const schedule = () => {
        timer = later(async () => {
          expect(inTransaction(), 'outside any transaction').to.equal(false);
          return accounts().save(accounts().create({ name: `timer-save-${via}`, credits: 5 }));
        });
      };
      if (via === 'transaction()') await transaction(async () => schedule());
      else if (via === 'dataSource.transaction(cb)') await env.ds.transaction(async () => schedule());
      else await withAdvisoryLock(`edge-timer-save-${env.name}`, async () => schedule(), { scope: 'session' });
      const saved = await timer;
      expect(await outside(() => accounts().countBy({ id: saved.id })), 'committed, visible to another request').to.equal(1);
    });
  }
});
