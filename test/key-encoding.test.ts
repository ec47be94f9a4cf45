import { expect } from 'chai';
import Redis from 'ioredis';
import { LockConfigError, Redlock, advisoryLockId, withAdvisoryLock } from '../src';
import { childFrame, runInFrame } from '../src/context/store';
import { BillUser } from './fixtures/billing';
import { describeEachBackend } from './support/suite';

/** Keys that differ only in characters a server would drop or rewrite must stay different locks. */
describeEachBackend('advisory keys that differ after a NUL byte', [BillUser], () => {
  it('are two locks on every database (MariaDB compares GET_LOCK names only up to a NUL)', async () => {
    expect(advisoryLockId('a\u0000b')[0]).to.not.equal(advisoryLockId('a\u0000c')[0]);
    const inner = await withAdvisoryLock('a\u0000b', () =>
      // another request: a fresh context, so it is not a re-entry
      runInFrame(childFrame({ txs: new Map(), values: new Map(), advisoryHeld: undefined, pinned: undefined }), () =>
        withAdvisoryLock('a\u0000c', async () => 'free', { timeoutMs: 0 }),
      ),
    );
    expect(inner).to.equal('free');
  });
});

describe('Redlock keys with a lone surrogate', () => {
  it('are refused rather than sent as U+FFFD (where two keys would become one lock)', async () => {
    const client = new Redis(process.env.REDIS_URLS?.split(',')[0] ?? 'redis://127.0.0.1:6379', { lazyConnect: false, maxRetriesPerRequest: 1 });
    try {
      await client.ping().catch((e) => {
        if (process.env.CI) throw e;
        console.warn('[ormlock tests] SKIPPING: no Redis');
      });
      const redlock = new Redlock([client]);
      const err = await redlock.tryAcquire('\uD800x', 5000).then(
        () => null,
        (e) => e,
      );
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.contain('lone surrogate');
    } finally {
      client.disconnect();
    }
  });
});
