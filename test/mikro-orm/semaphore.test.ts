import { expect } from 'chai';
import { currentLockSignal, LockNotAvailableError, withSemaphore } from '../../src';
import { race } from '../../src/testing';
import { MkSlot } from '../fixtures/mikro-advisory';
import { concurrencyMeter } from '../support/concurrency-meter';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { rejection } from '../support/rejection';

describeEachMikroBackend('withSemaphore on MikroORM', [MkSlot], (env) => {
  before(async () => {
    // what createFencingTable (TypeORM) creates; a MikroORM application creates it in a migration
    const sequence = env.name === 'postgres' ? '"ormlock_fencing_seq"' : '`ormlock_fencing_seq`';
    await env.orm.em.getConnection().execute(`CREATE SEQUENCE IF NOT EXISTS ${sequence}`);
  });

  const name = `mk-sem-${process.pid}`;

  it('control: without the semaphore more than 3 of 30 racing bodies run at once', async () => {
    const meter = concurrencyMeter();
    await race(30, () => meter.run(30));
    expect(meter.max).to.be.above(3);
  });

  it('at most 3 of 30 racing bodies at once, distinct tokens, each body under its permit signal', async function () {
    this.timeout(60_000);
    const meter = concurrencyMeter();
    const tokens: bigint[] = [];
    const results = await race(30, () =>
      withSemaphore(`${name}-race`, 3, async (permit) => {
        expect(currentLockSignal()).to.equal(permit.signal);
        tokens.push(permit.token);
        await meter.run(30);
      }),
    );
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    expect(meter.max).to.be.within(1, 3);
    expect(new Set(tokens).size).to.equal(30);
  });

  it('timeoutMs: 0 while the only permit is held: LockNotAvailableError', async () => {
    let release!: () => void;
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const holder = withSemaphore(`${name}-full`, 1, async () => {
      entered();
      await new Promise<void>((r) => (release = r));
    });
    await inside;
    expect(await rejection(withSemaphore(`${name}-full`, 1, async () => 1, { timeoutMs: 0 }))).to.be.instanceOf(LockNotAvailableError);
    release();
    await holder;
  });
});
