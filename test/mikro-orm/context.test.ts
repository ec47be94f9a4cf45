import { Transactional as MikroTransactional, RequestContext, type EntityManager } from '@mikro-orm/core';
import { expect } from 'chai';
import { Current, currentManager, inTransaction, transaction, withLock } from '../../src';
import { MkOrder, MkUser } from '../fixtures/mikro-billing';
import { describeEachMikroBackend } from '../support/mikro-suite';

describeEachMikroBackend('context', [MkUser, MkOrder], (env) => {
  const connectionId = async (em: EntityManager) => {
    const [row] = await em.getConnection().execute(env.handle.dialect.connectionIdSql, [], 'all', em.getTransactionContext());
    return String(row.connectionId);
  };

  it('inside transaction() the global orm.em is the transaction’s EntityManager (and outside it refuses: allowGlobalContext is off)', async () => {
    await transaction(async () => {
      const em = currentManager() as EntityManager;
      expect(em.getTransactionContext()).to.not.equal(undefined);
      expect(env.orm.em.getContext()).to.equal(em);
      env.orm.em.create(MkUser, { credits: 42 });
      await env.orm.em.flush();
      expect(await env.orm.em.count(MkUser, { credits: 42 })).to.equal(1); // this transaction sees it
      expect(await env.orm.em.fork().count(MkUser, { credits: 42 })).to.equal(0); // others do not, until commit
    });
    expect(await env.orm.em.fork().count(MkUser, { credits: 42 })).to.equal(1); // flushed at commit
    expect(() => env.orm.em.getContext()).to.throw(/global EntityManager/);
  });

  it('inside a RequestContext, transaction() still resolves orm.em to the transaction’s EntityManager', async () => {
    await RequestContext.create(env.orm.em, async () => {
      const requestEm = env.orm.em.getContext();
      await transaction(async () => {
        expect(env.orm.em.getContext()).to.equal(currentManager());
        expect(env.orm.em.getContext()).to.not.equal(requestEm);
      });
      expect(env.orm.em.getContext()).to.equal(requestEm);
    });
  });

  it("MikroORM's @Transactional inside an ormlock transaction is part of it (rolled back with it)", async () => {
    class Service {
      constructor(readonly orm = env.orm) {}
      @MikroTransactional()
      async add() {
        env.orm.em.create(MkUser, { credits: 4242 });
      }
    }
    const err = await transaction(async () => {
      await new Service().add();
      expect(await env.orm.em.count(MkUser, { credits: 4242 })).to.equal(1); // visible inside
      throw new Error('boom');
    }).then(
      () => null,
      (e) => e,
    );
    expect(err?.message).to.equal('boom');
    expect(await env.orm.em.fork().count(MkUser, { credits: 4242 })).to.equal(0);
  });

  it("ormlock calls inside MikroORM's em.transactional() join it: same connection, same EntityManager", async () => {
    const seed = env.orm.em.fork();
    const user = seed.create(MkUser, { credits: 10 });
    await seed.flush();
    await env.orm.em.fork().transactional(async (em) => {
      const outer = await connectionId(em);
      const loaded = await em.findOneOrFail(MkUser, user.id);
      await transaction(async () => {
        expect(currentManager()).to.equal(em);
        expect(await connectionId(currentManager())).to.equal(outer);
      });
      await withLock(loaded, async (locked) => {
        expect(locked).to.equal(loaded);
        locked.credits = 11;
      });
      expect(inTransaction()).to.equal(true);
    });
    expect((await env.orm.em.fork().findOneOrFail(MkUser, user.id)).credits).to.equal(11);
  });

  it('work that outlives the transaction runs as outside; Current values stay per call', async () => {
    let later: Promise<boolean> | undefined;
    await Current.run({ user: 'a' }, () =>
      transaction(async () => {
        later = new Promise((resolve) => setTimeout(() => resolve(inTransaction()), 20));
        expect(Current.get('user')).to.equal('a');
      }),
    );
    expect(await later).to.equal(false);
  });
});
