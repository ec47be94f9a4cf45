import { expect } from 'chai';
import { retryOnConflict, StaleEntityError, transaction, createOrFind } from '../../src';
import { Barrier, race } from '../../src/testing';
import { MkAccount, MkCounter, MkPlainCounter } from '../fixtures/mikro-counters';
import { describeEachMikroBackend } from '../support/mikro-suite';

describeEachMikroBackend('optimistic versions, retries, createOrFind', [MkCounter, MkPlainCounter, MkAccount], (env) => {
  async function seedPair<T extends typeof MkCounter | typeof MkPlainCounter>(cls: T, tag: string) {
    const em = env.orm.em.fork();
    const a = em.create(cls as typeof MkCounter, { name: `${tag}-a` });
    const b = em.create(cls as typeof MkCounter, { name: `${tag}-b` });
    await em.flush();
    return [a.id, b.id] as const;
  }

  const valuesOf = async (cls: typeof MkCounter | typeof MkPlainCounter, ids: readonly number[]) =>
    (await env.orm.em.fork().find(cls as typeof MkCounter, { id: { $in: [...ids] } }, { orderBy: { id: 'asc' } })).map((c) => c.value);

  it('two stale entities flushed in one batch: StaleEntityError, nothing written', async () => {
    const [a, b] = await seedPair(MkCounter, 'stale');
    const mine = env.orm.em.fork();
    const [ca, cb] = await mine.find(MkCounter, { id: { $in: [a, b] } }, { orderBy: { id: 'asc' } });
    const other = env.orm.em.fork();
    const oa = await other.findOneOrFail(MkCounter, a);
    oa.value = 100;
    await other.flush(); // a moves on to version 2
    ca.value += 1;
    cb.value += 1; // two changed MkCounters: one batched UPDATE
    env.log.length = 0;
    const err = await mine.flush().then(
      () => null,
      (e) => e,
    );
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(err.entity).to.equal('MkCounter');
    const sent = env.log.splice(0);
    expect(
      sent.filter((q) => /^select/i.test(q.trim())),
      'no separate version SELECT',
    ).to.deep.equal([]);
    expect(await valuesOf(MkCounter, [a, b])).to.deep.equal([100, 0]); // b not written either
  });

  it('a stale single row: StaleEntityError (MikroORM’s OptimisticLockError converted), nothing written', async () => {
    const [a] = await seedPair(MkCounter, 'single');
    const mine = env.orm.em.fork();
    const ca = await mine.findOneOrFail(MkCounter, a);
    const other = env.orm.em.fork();
    (await other.findOneOrFail(MkCounter, a)).value = 7;
    await other.flush();
    ca.value = 1;
    const err = await mine.flush().then(
      () => null,
      (e) => e,
    );
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(await valuesOf(MkCounter, [a])).to.deep.equal([7]);
  });

  it('a stale removal: StaleEntityError, nothing deleted', async () => {
    const [a, b] = await seedPair(MkCounter, 'remove');
    const mine = env.orm.em.fork();
    const both = await mine.find(MkCounter, { id: { $in: [a, b] } });
    const other = env.orm.em.fork();
    (await other.findOneOrFail(MkCounter, b)).value = 5;
    await other.flush();
    both.forEach((c) => mine.remove(c));
    const err = await mine.flush().then(
      () => null,
      (e) => e,
    );
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(err.message).to.contain('DELETE');
    expect(await valuesOf(MkCounter, [a, b])).to.deep.equal([0, 5]); // a not deleted either
    const fresh = env.orm.em.fork();
    fresh.remove(await fresh.find(MkCounter, { id: { $in: [a, b] } }));
    await fresh.flush(); // a removal at the current versions goes through
    expect(await valuesOf(MkCounter, [a, b])).to.deep.equal([]);
  });

  /**
   * 15 concurrent increments of both counters in one flush each, retried on conflict. Each
   * caller's first attempt writes only once every caller has read, so the reads overlap however
   * staggered the pool's new connections open.
   */
  async function increments(cls: typeof MkCounter | typeof MkPlainCounter) {
    const ids = await seedPair(cls, cls.name);
    const allRead = new Barrier(15);
    const results = await race(15, () => {
      let first = true;
      return retryOnConflict(
        async () => {
          const em = env.orm.em; // the retry's transaction
          const reading = em.find(cls as typeof MkCounter, { id: { $in: [...ids] } });
          const counters = first ? await allRead.wait(reading) : await reading;
          first = false;
          for (const c of counters) c.value += 1;
          await em.flush(); // a batched UPDATE of two rows
        },
        { attempts: 100, backoffMs: 2 },
      );
    });
    return { values: await valuesOf(cls, ids), failures: results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason) };
  }

  it('control: MikroORM’s own batched version check loses increments under concurrency (mikro-orm #1703)', async () => {
    const { values, failures } = await increments(MkPlainCounter);
    expect(failures).to.deep.equal([]);
    expect(Math.min(...values), `lost increments expected, got ${values}`).to.be.lessThan(15);
  });

  it('@Versioned: 15 retried increments of two counters per flush are exact', async () => {
    const { values, failures } = await increments(MkCounter);
    expect(failures).to.deep.equal([]);
    expect(values).to.deep.equal([15, 15]);
  });

  it('createOrFind(repository) ×30 concurrently: one row, one id', async () => {
    const email = `u${Date.now()}@example.com`;
    const results = await race(30, () => createOrFind(env.orm.em.fork().getRepository(MkAccount), { email }, { name: 'first' }));
    const ids = results.map((r) => (r.status === 'fulfilled' ? r.value.id : (r as PromiseRejectedResult).reason));
    expect(new Set(ids).size, String(ids)).to.equal(1);
    expect(await env.orm.em.fork().count(MkAccount, { email })).to.equal(1);
    // inside a transaction: a savepoint keeps the transaction usable after the conflict
    await transaction(async () => {
      const again = await createOrFind(env.orm.em.getRepository(MkAccount), { email });
      expect(again.id).to.equal(ids[0]);
      expect(await env.orm.em.count(MkAccount, { email })).to.equal(1);
    });
  });
});
