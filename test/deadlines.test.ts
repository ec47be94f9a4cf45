import { expect } from 'chai';
import { Deadlines } from '../src/redis/deadlines';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** Timers that keep the process alive (unref'd ones are not listed). */
const liveTimers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('Deadlines (the per-node timeouts of the Redis rounds)', () => {
  it('runs a deadline when it is due and never one that was cancelled, in the order they were due', async () => {
    const d = new Deadlines();
    const fired: string[] = [];
    const started = Date.now();
    const at: Record<string, number> = {};
    d.add(40, () => {
      fired.push('b');
      at.b = Date.now() - started;
    });
    d.add(20, () => {
      fired.push('a');
      at.a = Date.now() - started;
    }); // earlier than the armed timer: re-armed
    const cancelled = d.add(30, () => fired.push('never'));
    cancelled.cancel();
    cancelled.cancel(); // idempotent
    while (fired.length < 2 && Date.now() - started < 2000) await sleep(10);
    expect(fired).to.have.members(['a', 'b']);
    // never early; late only by what a loaded machine delays a timer
    expect(at.a).to.be.at.least(19);
    expect(at.b).to.be.at.least(39);
    // one after the other when the timer fired on time for a (a timer late past b's time finds both
    // due at once and runs them in the order they were added)
    if (at.a < 39) expect(fired).to.deep.equal(['a', 'b']);
    await sleep(50);
    expect(fired, 'the cancelled one never runs').to.have.members(['a', 'b']);
    expect(fired).to.have.length(2);
  });

  it('thousands of rounds that settle in time cost one timer, which stops keeping the process alive once none is live', async () => {
    const d = new Deadlines();
    const before = liveTimers();
    const entries = Array.from({ length: 5000 }, () => d.add(1000, () => expect.fail('a cancelled deadline ran')));
    expect(liveTimers() - before, 'one timer for all').to.equal(1);
    for (const e of entries) e.cancel();
    expect(liveTimers() - before, 'none live: the timer no longer holds the process').to.equal(0);
    const again = d.add(1000, () => undefined);
    expect(liveTimers() - before, 'live again').to.equal(1);
    again.cancel();
    expect(liveTimers() - before).to.equal(0);
  });

  it('a deadline added after the others settled still fires (the timer is re-armed for it)', async () => {
    const d = new Deadlines();
    d.add(10, () => undefined).cancel();
    let fired = false;
    d.add(30, () => (fired = true));
    await sleep(15); // the first timer fires and finds only the second, not yet due
    expect(fired).to.equal(false);
    await sleep(40);
    expect(fired).to.equal(true);
  });
});
