import { expect } from 'chai';
import { IsNull } from 'typeorm';
import { DeadlockError, LockNotAvailableError, LockTimeoutError, lock, transaction, withLock, withPessimistic } from '../src';
import { Barrier, race } from '../src/testing';
import { BillJob, BillOrder, BillUser, Billing, sleep } from './fixtures/billing';
import { describeEachBackend } from './support/suite';

describeEachBackend('row locks', [BillUser, BillOrder, BillJob], (env) => {
  const N = 20;

  async function seedUser(credits: number) {
    const users = env.ds.getRepository(BillUser);
    const orders = env.ds.getRepository(BillOrder);
    const user = await users.save(users.create({ credits }));
    const orderIds: number[] = [];
    for (let i = 0; i < N; i++) orderIds.push((await orders.save(orders.create({ userId: user.id, price: 10 }))).id);
    return { user, orderIds, users, orders };
  }

  async function runCharges(method: 'chargeUnlocked' | 'chargePessimistic' | 'chargeWithLock') {
    const { user, orderIds, users, orders } = await seedUser(1000);
    const billing = new Billing(users, orders); // repositories obtained before any transaction
    const results = await race(N, (i) => billing[method](user.id, orderIds[i]));
    const failures = results.filter((r) => r.status === 'rejected');
    const after = await users.findOneByOrFail({ id: user.id });
    return { credits: after.credits, failures };
  }

  it('control: 20 concurrent charges without a lock lose updates', async () => {
    const { credits, failures } = await runCharges('chargeUnlocked');
    expect(failures).to.have.length(0);
    expect(credits, 'lost updates expected without locking').to.be.greaterThan(1000 - N * 10);
  });

  it('@Pessimistic() on the method: 20 concurrent charges leave exact credits', async () => {
    const { credits, failures } = await runCharges('chargePessimistic');
    expect(failures.map((f) => (f as PromiseRejectedResult).reason)).to.deep.equal([]);
    expect(credits).to.equal(1000 - N * 10);
  });

  it('withLock(user): 20 concurrent charges leave exact credits', async () => {
    const { credits, failures } = await runCharges('chargeWithLock');
    expect(failures.map((f) => (f as PromiseRejectedResult).reason)).to.deep.equal([]);
    expect(credits).to.equal(1000 - N * 10);
  });

  /** Holds a row lock on `user` until the returned release() is called. */
  async function holdLock(user: BillUser) {
    const held = new Barrier(2);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let holderId: number | undefined;
    const done = transaction(async () => {
      const copy = env.ds.getRepository(BillUser).create({ id: user.id });
      await lock(copy);
      const [row] = await env.ds.query(env.handle.dialect.connectionIdSql);
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
    const holder = await holdLock(user);
    const started = Date.now();
    try {
      const err = await withLock(user, async () => 'locked', { onLocked: 'nowait' }).then(
        () => null,
        (e) => e,
      );
      expect(err).to.be.instanceOf(LockNotAvailableError);
      expect(err.entity).to.equal('BillUser');
      expect(Date.now() - started).to.be.lessThan(1000);
    } finally {
      await holder.release();
    }
  });

  it('timeoutMs: 300 on a held row throws LockTimeoutError (PostgreSQL: with the blocker pid)', async () => {
    const { user } = await seedUser(5);
    const holder = await holdLock(user);
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

  it('skip_locked: 4 workers claim each of 100 jobs exactly once (control without lock claims some twice)', async () => {
    const jobs = env.ds.getRepository(BillJob);
    async function claimAll(locked: boolean) {
      await jobs.clear();
      await jobs.save(Array.from({ length: 100 }, () => jobs.create({ claimedBy: null })));
      const claims = new Map<number, string[]>();
      const claimBatch = async (worker: string) => {
        const batch = await jobs.find({ where: { claimedBy: IsNull() }, order: { id: 'ASC' }, take: 5 });
        await sleep(5);
        for (const job of batch) {
          claims.set(job.id, [...(claims.get(job.id) ?? []), worker]);
          job.claimedBy = worker;
        }
        await jobs.save(batch);
        return batch.length;
      };
      await race(4, async (w) => {
        const worker = `w${w}`;
        for (;;) {
          const n = locked ? await withPessimistic(() => claimBatch(worker), { onLocked: 'skip_locked' }) : await transaction(() => claimBatch(worker));
          if (n === 0) break;
        }
      });
      return claims;
    }
    const control = await claimAll(false);
    expect([...control.values()].filter((w) => w.length > 1).length, 'control should double-claim').to.be.greaterThan(0);

    const claims = await claimAll(true);
    expect(claims.size).to.equal(100);
    expect([...claims.values()].every((w) => w.length === 1)).to.equal(true);
    expect(new Set([...claims.values()].map((w) => w[0])).size, 'workers overlapped').to.be.greaterThan(1);
    expect(await jobs.countBy({ claimedBy: IsNull() })).to.equal(0);
  });

  it('two transactions locking two rows in opposite orders: exactly one DeadlockError, the other commits', async () => {
    const users = env.ds.getRepository(BillUser);
    const a = await users.save(users.create({ credits: 0 }));
    const b = await users.save(users.create({ credits: 0 }));
    const bothHoldFirst = new Barrier(2);
    const results = await race(2, (i) =>
      transaction(async () => {
        const [first, second] = i === 0 ? [a, b] : [b, a];
        const f = await lock(users.create({ id: first.id }));
        await bothHoldFirst.wait();
        const s = await lock(users.create({ id: second.id }));
        f.credits += 1;
        s.credits += 1;
        await users.save([f, s]);
        return i;
      }),
    );
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).to.have.length(1);
    expect(rejected[0].reason).to.be.instanceOf(DeadlockError);
    expect((await users.findOneByOrFail({ id: a.id })).credits).to.equal(1);
    expect((await users.findOneByOrFail({ id: b.id })).credits).to.equal(1);
  });

  /** Statements of one update in a plain transaction, and of the same update inside withLock(opts). */
  async function statementsUnlockedAndLocked(options: { timeoutMs?: number } = {}) {
    const users = env.ds.getRepository(BillUser);
    const user = await users.save(users.create({ credits: 100 }));
    const work = () => users.update({ id: user.id }, { credits: () => 'credits - 1' });
    env.log.start();
    await transaction(async () => {
      await work();
    });
    const unlocked = env.log.stop();
    env.log.start();
    await withLock(
      user,
      async () => {
        await work();
      },
      options,
    );
    return { unlocked, locked: env.log.stop() };
  }

  it('round trips: withLock on a loaded entity is one SELECT … FOR UPDATE plus the work', async () => {
    const { unlocked, locked } = await statementsUnlockedAndLocked();
    expect(locked.length).to.equal(unlocked.length + 1);
    // the same statements but one (PostgreSQL writes the values of a transaction's first statement into it: compare kinds)
    const kind = (q: string) => (/FOR UPDATE/.test(q) ? 'lock' : q.split(' ')[0]);
    expect(locked.map(kind).filter((k) => k !== 'lock')).to.deep.equal(unlocked.map(kind));
    expect(locked.filter((q) => kind(q) === 'lock')).to.have.length(1);
  });

  it('round trips: a wait limit adds no statement (MariaDB: WAIT n in the lock clause; PostgreSQL: set and restored inside the locking SELECT)', async () => {
    const { unlocked, locked } = await statementsUnlockedAndLocked({ timeoutMs: 500 });
    expect(locked.length, locked.join('\n')).to.equal(unlocked.length + 1);
  });

  /** The wait limit of row locks in force on the ambient connection now, as the database has it. */
  async function waitLimitNow(): Promise<string> {
    const sql = env.name === 'postgres' ? `SELECT current_setting('lock_timeout') AS v` : 'SELECT @@SESSION.innodb_lock_wait_timeout AS v';
    return String((await env.ds.query(sql))[0].v);
  }

  it('a wait limit lasts for its lock only: the setting is back right after, by lock(), withLock and a @Pessimistic read through the query builder', async () => {
    const users = env.ds.getRepository(BillUser);
    const orders = env.ds.getRepository(BillOrder);
    const user = await users.save(users.create({ credits: 3 }));
    await orders.save(orders.create({ userId: user.id, user, price: 1 }));
    await transaction(async () => {
      const before = await waitLimitNow();
      await lock(users.create({ id: user.id }), { timeoutMs: 2500 });
      expect(await waitLimitNow(), 'after lock()').to.equal(before);
      await withLock(
        user,
        async () => {
          expect(await waitLimitNow(), 'inside withLock').to.equal(before);
        },
        { timeoutMs: 3500 },
      );
      // a read the query builder issues (relations: the fast path falls back): the limit is set around it, then restored
      await withPessimistic(() => orders.find({ where: { userId: user.id } }), { timeoutMs: 4500 });
      expect(await waitLimitNow(), 'after a @Pessimistic read').to.equal(before);
    });
  });

  it("after a lock with a wait limit, the user's own later statement in the transaction waits as long as it needs (control: the limit, left in force, would cut it)", async () => {
    const users = env.ds.getRepository(BillUser);
    const a = await users.save(users.create({ credits: 1 }));
    const b = await users.save(users.create({ credits: 2 }));
    const holder = await holdLock(b);
    const releaseLater = sleep(1500).then(() => holder.release());
    try {
      await transaction(async () => {
        await lock(users.create({ id: a.id }), { timeoutMs: 300 });
        const started = Date.now();
        await users.update({ id: b.id }, { credits: 20 }); // a plain UPDATE of the held row: no limit of ormlock's
        expect(Date.now() - started).to.be.at.least(1000);
      });
    } finally {
      await releaseLater;
    }
    expect((await users.findOneByOrFail({ id: b.id })).credits).to.equal(20);
    // control: the same limit left in force by hand cuts the same statement short
    if (env.name === 'postgres') {
      const again = await holdLock(b);
      try {
        const err = await transaction(async () => {
          await env.ds.query(`SELECT set_config('lock_timeout', '300ms', true)`);
          await users.update({ id: b.id }, { credits: 21 });
        }).then(
          () => null,
          (e) => e,
        );
        expect(err, 'a limit left in force cuts the later statement').to.be.instanceOf(Error);
      } finally {
        await again.release();
      }
    }
  });

  it('after a lock with a wait limit, a later lock without one in the same transaction waits as long as needed', async () => {
    const users = env.ds.getRepository(BillUser);
    const a = await users.save(users.create({ credits: 1 }));
    const b = await users.save(users.create({ credits: 2 }));
    const holder = await holdLock(b);
    const releaseLater = sleep(1500).then(() => holder.release());
    await transaction(async () => {
      await lock(users.create({ id: a.id }), { timeoutMs: 300 });
      const started = Date.now();
      const locked = await lock(users.create({ id: b.id })); // no limit: must outlast the 300 ms
      expect(locked.credits).to.equal(2);
      expect(Date.now() - started).to.be.at.least(1000);
    });
    await releaseLater;
  });

  it('a locked read with a join locks only the main table (PostgreSQL OF) or is refused (MariaDB)', async () => {
    const orders = env.ds.getRepository(BillOrder);
    const users = env.ds.getRepository(BillUser);
    const user = await users.save(users.create({ credits: 1 }));
    await orders.save(orders.create({ userId: user.id, user, price: 1 }));
    env.log.start();
    const run = withPessimistic(() => orders.find({ where: { userId: user.id }, relations: { user: true } }));
    if (env.handle.dialect.capabilities.lockOf) {
      const found = await run;
      expect(found[0].user?.id).to.equal(user.id);
      expect(env.log.stop().join('\n')).to.match(/FOR UPDATE OF "BillOrder"/);
      // the joined user row is not locked: another transaction can lock it at once
      await withLock(user, async () => undefined, { onLocked: 'nowait' });
    } else {
      env.log.stop();
      const err = await run.then(
        () => null,
        (e) => e,
      );
      expect(err?.name).to.equal('LockConfigError');
      expect(err.message).to.contain('BillOrder').and.contain('joins');
    }
  });
});
