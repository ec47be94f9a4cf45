import { expect } from 'chai';
import { currentManager, type LockEvent, PoolExhaustedError, RetryOnConflict, transaction, withAdvisoryLock, withLock } from '../../src';
import { race } from '../../src/testing';
import { MkCounter } from '../fixtures/mikro-counters';
import { MkOrder, MkUser } from '../fixtures/mikro-billing';
import { describeEachMikroBackend } from '../support/mikro-suite';

const events: LockEvent[] = [];

describeEachMikroBackend(
  'observers, explicit installation, pool bound, @RetryOnConflict',
  [MkUser, MkOrder, MkCounter],
  (env) => {
    it('lock events: a row lock and an advisory lock are acquired, then released at commit with heldMs', async () => {
      const em = env.orm.em.fork();
      const user = em.create(MkUser, { credits: 3 });
      await em.flush();
      events.length = 0;
      await withLock(user, async (u) => {
        u.credits -= 1;
        await withAdvisoryLock(['report', user.id], async () => undefined);
      });
      const summary = events.map((e) => `${e.type}:${e.kind}:${e.target}`);
      expect(summary).to.include.members([
        'acquired:row:MkUser',
        'released:row:MkUser',
        'acquired:advisory:["report",' + user.id + ']',
        'released:advisory:["report",' + user.id + ']',
      ]);
      expect(events.filter((e) => e.type === 'released').every((e) => typeof e.heldMs === 'number')).to.equal(true);
      expect((await env.orm.em.fork().findOneOrFail(MkUser, user.id)).credits).to.equal(2);
    });

    it('{ dataSource } takes the MikroORM instance or one of its EntityManagers', async () => {
      await transaction(async () => expect(currentManager(env.orm)).to.not.equal(env.orm.em), { dataSource: env.orm });
      await transaction(async () => expect(currentManager(env.orm.em)).to.not.equal(env.orm.em), { dataSource: env.orm.em.fork() });
    });

    it('requires_new inside a held connection of a full pool: PoolExhaustedError instead of waiting forever', async () => {
      const results = await race(4, () => transaction(() => transaction(async () => 'inner', { propagation: 'requires_new' })));
      const errors = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
      expect(errors.length).to.be.greaterThan(0);
      expect(
        errors.every((e) => e instanceof PoolExhaustedError),
        String(errors),
      ).to.equal(true);
    });

    it('@RetryOnConflict on a method: concurrent increments of a @Versioned row are exact', async () => {
      const em = env.orm.em.fork();
      const counter = em.create(MkCounter, { name: 'retry' });
      await em.flush();
      class Hits {
        @RetryOnConflict({ attempts: 100, backoffMs: 2 })
        async increment(id: number) {
          const c = await env.orm.em.findOneOrFail(MkCounter, id);
          await new Promise((r) => setTimeout(r, 5));
          c.value += 1;
        }
      }
      const hits = new Hits();
      const results = await race(10, () => hits.increment(counter.id));
      expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
      expect((await env.orm.em.fork().findOneOrFail(MkCounter, counter.id)).value).to.equal(10);
    });
  },
  { install: { onLockEvent: (e) => events.push(e), connectionTimeoutMs: 300 }, poolSize: 4 },
);
