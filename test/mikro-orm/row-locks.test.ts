import { expect } from 'chai';
import {
  DeadlockError,
  LockConfigError,
  LockNotAvailableError,
  LockTimeoutError,
  TransactionRequiredError,
  lock,
  transaction,
  withLock,
  withPessimistic,
} from '../../src';
import { Barrier, race } from '../../src/testing';
import { MikroBilling, MkOrder, MkUser } from '../fixtures/mikro-billing';
import { describeEachMikroBackend } from '../support/mikro-suite';

describeEachMikroBackend('row locks', [MkUser, MkOrder], (env) => {
  const N = 20;

  async function seedUser(credits: number) {
    const em = env.orm.em.fork();
    const user = em.create(MkUser, { credits });
    await em.flush();
    const orderIds: number[] = [];
    for (let i = 0; i < N; i++) orderIds.push(em.create(MkOrder, { user, price: 10 }) && 0);
    await em.flush();
    const orders = await em.find(MkOrder, { user }, { orderBy: { id: 'asc' } });
    return { user, orderIds: orders.map((o) => o.id) };
  }

  async function creditsOf(id: number): Promise<number> {
    return (await env.orm.em.fork().findOneOrFail(MkUser, id)).credits;
  }

  async function runCharges(method: 'chargeUnlocked' | 'chargePessimistic' | 'chargeWithLock') {
    const { user, orderIds } = await seedUser(1000);
    const billing = new MikroBilling(env.orm);
    const results = await race(N, (i) => billing[method](user.id, orderIds[i]));
    const failures = results.filter((r) => r.status === 'rejected').map((f) => (f as PromiseRejectedResult).reason);
    return { credits: await creditsOf(user.id), failures };
  }

  it('control: 20 concurrent charges without a lock lose updates', async () => {
    const { credits, failures } = await runCharges('chargeUnlocked');
    expect(failures).to.deep.equal([]);
    expect(credits, 'lost updates expected without locking').to.be.greaterThan(1000 - N * 10);
  });

  it('@Pessimistic() on a service method using the global orm.em: 20 concurrent charges leave exact credits', async () => {
    const { credits, failures } = await runCharges('chargePessimistic');
    expect(failures).to.deep.equal([]);
    expect(credits).to.equal(1000 - N * 10);
  });

  it('withLock(user) on an entity loaded by another EntityManager: 20 concurrent charges leave exact credits', async () => {
    const { credits, failures } = await runCharges('chargeWithLock');
    expect(failures).to.deep.equal([]);
    expect(credits).to.equal(1000 - N * 10);
  });

  /** Holds a row lock on user `id` until the returned release() is called. */
  async function holdLock(id: number) {
    const held = new Barrier(2);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let holderId: number | undefined;
    const done = transaction(async () => {
      await lock(env.orm.em.getReference(MkUser, id));
      const [row] = await env.orm.em.getConnection().execute(env.handle.dialect.connectionIdSql, [], 'all', env.orm.em.getTransactionContext());
      holderId = Number(row.connectionId);
      await held.wait();
      await released;
    });
    await held.wait();
    return {
      release: () => {
        release();
        return done;
      },
      holderId: () => holderId!,
    };
  }

  it("onLocked: 'nowait' on a held row throws LockNotAvailableError at once", async () => {
    const { user } = await seedUser(5);
    const holder = await holdLock(user.id);
    const started = Date.now();
    try {
      const err = await withLock(user, async () => 'locked', { onLocked: 'nowait' }).then(
        () => null,
        (e) => e,
      );
      expect(err).to.be.instanceOf(LockNotAvailableError);
      expect(err.entity).to.equal('MkUser');
      expect(Date.now() - started).to.be.lessThan(1000);
    } finally {
      await holder.release();
    }
  });

  it('timeoutMs: 300 on a held row throws LockTimeoutError (PostgreSQL: with the blocker pid)', async () => {
    const { user } = await seedUser(5);
    const holder = await holdLock(user.id);
    try {
      const err = await withLock(user, async () => 'locked', { timeoutMs: 300 }).then(
        () => null,
        (e) => e,
      );
      expect(err).to.be.instanceOf(LockTimeoutError);
      expect(err.waitedMs).to.be.at.least(250);
      if (env.handle.dialect.describeRowLockHolder) {
        expect(err.blockerPid).to.equal(holder.holderId());
        expect(err.message).to.contain(`pid ${holder.holderId()}`);
      }
    } finally {
      await holder.release();
    }
    // the timeout was restored: a later lock in a fresh transaction waits normally
    await withLock(user, async (u) => expect(u.credits).to.equal(5));
  });

  it('two transactions locking two rows in opposite orders: exactly one DeadlockError, the other commits', async () => {
    const a = (await seedUser(0)).user;
    const b = (await seedUser(0)).user;
    const bothHoldFirst = new Barrier(2);
    const results = await race(2, (i) =>
      transaction(async () => {
        const [first, second] = i === 0 ? [a, b] : [b, a];
        const f = await lock(env.orm.em.getReference(MkUser, first.id));
        await bothHoldFirst.wait();
        const s = await lock(env.orm.em.getReference(MkUser, second.id));
        f.credits += 1;
        s.credits += 1;
        return i; // flushed at commit
      }),
    );
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).to.have.length(1);
    expect(rejected[0].reason).to.be.instanceOf(DeadlockError);
    expect(await creditsOf(a.id)).to.equal(1);
    expect(await creditsOf(b.id)).to.equal(1);
  });

  it('lock() outside a transaction throws TransactionRequiredError; a @Pessimistic read through a fork of its own throws LockConfigError', async () => {
    const { user } = await seedUser(5);
    const err = await lock(user).then(
      () => null,
      (e) => e,
    );
    expect(err).to.be.instanceOf(TransactionRequiredError);
    const escaped = await withPessimistic(() => env.orm.em.fork().findOneOrFail(MkUser, user.id)).then(
      () => null,
      (e) => e,
    );
    expect(escaped).to.be.instanceOf(LockConfigError);
    expect(escaped.message).to.contain("outside the method's transaction");
  });

  it('round trips: withLock on a loaded entity is one SELECT … FOR UPDATE plus the work', async () => {
    const { user } = await seedUser(100);
    const work = () => env.orm.em.nativeUpdate(MkUser, { id: user.id }, { credits: 99 });
    env.log.length = 0;
    await transaction(async () => {
      await work();
    });
    const unlocked = env.log.splice(0);
    await withLock(user, async () => {
      await work();
    });
    const locked = env.log.splice(0);
    expect(locked.length, `${unlocked.join('; ')}\nvs\n${locked.join('; ')}`).to.equal(unlocked.length + 1);
    expect(locked.filter((q) => /for update/i.test(q))).to.have.length(1);
  });
});
