/**
 * `ormlock/testing`: race(), values() and Barrier, without a database.
 */
import { expect } from 'chai';
import { Barrier, race, values } from '../src/testing';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('ormlock/testing', () => {
  it('Barrier refuses a party count that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, NaN]) expect(() => new Barrier(bad), String(bad)).to.throw(RangeError, /parties must be a positive integer/);
  });

  it('Barrier.wait() resolves for everyone only when the last party arrives', async () => {
    const barrier = new Barrier(3);
    let through = 0;
    const waits = [barrier.wait(), barrier.wait()].map((w) => w.then(() => (through += 1)));
    await tick();
    expect(through, 'two of three arrived').to.equal(0);
    await Promise.all([barrier.wait(), ...waits]);
    expect(through).to.equal(2);
  });

  it('Barrier.wait(work) arrives when the work settles and gives its value once everyone arrived', async () => {
    const barrier = new Barrier(2);
    let finishSecond!: (v: string) => void;
    const second = new Promise<string>((resolve) => (finishSecond = resolve));
    let firstDone = false;
    const first = barrier.wait(Promise.resolve('a')).then((v) => ((firstDone = true), v));
    await tick();
    expect(firstDone, 'the first work is done but the second is not: the first waits').to.equal(false);
    const secondWait = barrier.wait(second);
    finishSecond('b');
    expect(await Promise.all([first, secondWait])).to.deep.equal(['a', 'b']);
  });

  it('Barrier.wait(work) with failing work still arrives (nobody hangs), then rejects with its error', async () => {
    const barrier = new Barrier(2);
    const failing = barrier.wait(Promise.reject(new Error('read failed')));
    const other = barrier.wait(Promise.resolve(1));
    expect(await other, 'the other party passes').to.equal(1);
    const err = await failing.then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).to.equal('read failed');
  });

  it('race() starts every call after all have been created and settles them all; values() throws the first rejection', async () => {
    const started: number[] = [];
    const results = await race(4, async (i) => {
      started.push(i);
      await tick();
      if (i === 2) throw new Error('two');
      return i * 10;
    });
    expect(started.sort()).to.deep.equal([0, 1, 2, 3]);
    expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(() => values(results)).to.throw('two');
    expect(values(results.filter((r) => r.status === 'fulfilled'))).to.deep.equal([0, 10, 30]);
  });
});
