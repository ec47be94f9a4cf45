import { expect } from 'chai';
import { inspectLocks, withAdvisoryLock } from '../../src';
import { MkJobCounter, MkSlot } from '../fixtures/mikro-advisory';
import { describeEachMikroBackend } from '../support/mikro-suite';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describeEachMikroBackend('inspectLocks on a MikroORM instance', [MkJobCounter, MkSlot], (env) => {
  it('names the advisory key a caller waits for and the connection holding it', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const holder = withAdvisoryLock(
      'S3Worker-Lock',
      async () => {
        entered();
        await held;
      },
      { scope: 'session', dataSource: env.orm },
    );
    await inside;
    const waiter = withAdvisoryLock('S3Worker-Lock', async () => 'waited', { scope: 'session', dataSource: env.orm });
    try {
      let waits: Awaited<ReturnType<typeof inspectLocks>> = [];
      for (let i = 0; i < 40 && !waits.some((w) => w.lock.key === 'S3Worker-Lock'); i++) {
        await sleep(250);
        waits = await inspectLocks(env.orm);
      }
      const wait = waits.find((w) => w.lock.key === 'S3Worker-Lock');
      expect(wait, JSON.stringify(waits)).to.not.equal(undefined);
      expect(wait!.lock.kind).to.equal('advisory');
      expect(wait!.blocking.pid).to.be.a('number');
      expect(wait!.waiting.pid).to.not.equal(wait!.blocking.pid);
    } finally {
      release();
      await holder;
    }
    expect(await waiter).to.equal('waited');
    expect((await inspectLocks(env.orm)).filter((w) => w.lock.key === 'S3Worker-Lock')).to.deep.equal([]);
  });
});
