import { expect } from 'chai';
import { installLocking, lock, LockNotAvailableError, transaction, withAdvisoryLock, withLock, type LockEvent } from '../src';
import { BillOrder, BillUser } from './fixtures/billing';
import { NsPage, NsPagePlain, NsSite, NestedSetSubscriber } from './fixtures/nested-set';
import { describeEachBackend, sleep } from './support/suite';
import { BACKENDS, createDataSource } from './support/backends';

/** Observers belong to their installation: events with waitedMs on acquisition and heldMs on release, for every kind. */
describeEachBackend(
  'observers',
  [BillUser, BillOrder, NsSite, NsPage, NsPagePlain],
  (env) => {
    const events: LockEvent[] = [];
    const observer = { onLockEvent: (e: LockEvent) => events.push(e) };
    const watch = async (fn: () => Promise<unknown>): Promise<LockEvent[]> => {
      const list = env.handle.installation.observers as LockEvent[] & unknown[];
      (list as unknown[]).push(observer);
      events.length = 0;
      try {
        await fn();
      } finally {
        (list as unknown[]).splice((list as unknown[]).indexOf(observer), 1);
      }
      return [...events];
    };

    it('a row lock: acquired (waitedMs), then released at commit with heldMs ≥ the time it was held', async () => {
      const user = await env.ds.getRepository(BillUser).save(env.ds.getRepository(BillUser).create({ credits: 10 }));
      const seen = await watch(() => withLock(user, async () => sleep(60)));
      const row = seen.filter((e) => e.kind === 'row' && e.target === 'BillUser');
      expect(row.map((e) => e.type)).to.deep.equal(['acquired', 'released']);
      expect(row[0].waitedMs).to.be.a('number');
      expect(row[1].heldMs).to.be.at.least(50);
      expect(row[0].db).to.equal(env.handle.dialect.dbSystem);
    });

    it('a row lock released by a rollback is reported too', async () => {
      const user = await env.ds.getRepository(BillUser).save(env.ds.getRepository(BillUser).create({ credits: 10 }));
      const seen = await watch(() =>
        transaction(async () => {
          await lock(user);
          throw new Error('undo');
        }).catch(() => undefined),
      );
      expect(seen.filter((e) => e.kind === 'row').map((e) => e.type)).to.deep.equal(['acquired', 'released']);
    });

    it('a parent lock (lockParent) inside save(): acquired and released when save() commits', async () => {
      const site = await env.ds.getRepository(NsSite).save({ name: 'observed' });
      const seen = await watch(() => env.ds.getRepository(NsPage).save(env.ds.getRepository(NsPage).create({ title: 'p', siteId: site.id })));
      const parent = seen.filter((e) => e.kind === 'parent');
      expect(parent.map((e) => e.type)).to.deep.equal(['acquired', 'released']);
      expect(parent[0].target).to.equal('NsSite');
      expect(parent[1].heldMs).to.be.a('number');
    });

    it('advisory locks of both scopes: acquired and released with heldMs; not_available when held elsewhere', async () => {
      const seen = await watch(async () => {
        await withAdvisoryLock('observed-key', async () => sleep(30));
        await withAdvisoryLock('observed-key', async () => sleep(30), { scope: 'session' });
        let release!: () => void;
        const held = new Promise<void>((r) => (release = r));
        let entered!: () => void;
        const inside = new Promise<void>((r) => (entered = r));
        const holder = withAdvisoryLock('observed-key', async () => {
          entered();
          await held;
        });
        await inside;
        const err = await transaction(() => withAdvisoryLock('observed-key', async () => 1, { timeoutMs: 0 }), { propagation: 'requires_new' }).catch((e) => e);
        expect(err).to.be.instanceOf(LockNotAvailableError);
        release();
        await holder;
      });
      const adv = seen.filter((e) => e.kind === 'advisory' && e.target === 'observed-key');
      expect(adv.slice(0, 4).map((e) => e.type)).to.deep.equal(['acquired', 'released', 'acquired', 'released']);
      const released = adv.filter((x) => x.type === 'released');
      expect(released).to.have.length(3);
      expect(released[0].heldMs, 'the transaction-scoped body slept 30 ms').to.be.at.least(25);
      expect(released[1].heldMs, 'the session-scoped body slept 30 ms').to.be.at.least(25);
      expect(released[2].heldMs).to.be.a('number');
      expect(adv.map((e) => e.type)).to.include('not_available');
    });

    it('a throwing observer never breaks locking', async () => {
      const list = env.handle.installation.observers as unknown[];
      const bad = {
        onLockEvent: () => {
          throw new Error('observer bug');
        },
      };
      list.push(bad);
      try {
        const user = await env.ds.getRepository(BillUser).save(env.ds.getRepository(BillUser).create({ credits: 3 }));
        expect(await withLock(user, async (u) => u.credits)).to.equal(3);
        expect(await withAdvisoryLock('observer-bug', async () => 'ok')).to.equal('ok');
      } finally {
        list.splice(list.indexOf(bad), 1);
      }
    });
  },
  { subscribers: [NestedSetSubscriber] },
);

describe('observers of two installations', () => {
  it('each installation’s observer sees only its own events (PostgreSQL and MariaDB at once)', async function () {
    const [a, b] = await Promise.all(BACKENDS.map((name) => createDataSource(name, [BillUser, BillOrder])));
    if (!a || !b) return this.skip();
    const seenA: LockEvent[] = [];
    const seenB: LockEvent[] = [];
    const ha = await installLocking(a, { onLockEvent: (e) => seenA.push(e), namespace: 'obs-a' });
    const hb = await installLocking(b, { observers: [{ onLockEvent: (e) => seenB.push(e) }], namespace: 'obs-b' });
    try {
      const ua = await a.getRepository(BillUser).save(a.getRepository(BillUser).create({ credits: 1 }));
      const ub = await b.getRepository(BillUser).save(b.getRepository(BillUser).create({ credits: 2 }));
      await withLock(ua, async () => undefined);
      await withLock(ub, async () => undefined);
      await withAdvisoryLock('obs', async () => undefined, { dataSource: a });
      expect(seenA.map((e) => `${e.kind}:${e.type}`)).to.deep.equal(['row:acquired', 'row:released', 'advisory:acquired', 'advisory:released']);
      expect(seenB.map((e) => `${e.kind}:${e.type}`)).to.deep.equal(['row:acquired', 'row:released']);
      expect(seenA[0].db).to.equal(ha.dialect.dbSystem);
      expect(seenB[0].db).to.equal(hb.dialect.dbSystem);
    } finally {
      await a.destroy();
      await b.destroy();
    }
  });
});
