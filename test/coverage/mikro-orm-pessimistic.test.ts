import { Entity, PrimaryKey, Property, raw, type EntityManager as CoreEntityManager, type MikroORM } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/knex';
import { expect } from 'chai';
import { LockConfigError, transaction, withPessimistic } from '../../src';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { raceIncrements, rejection, sleep } from './support';
import { Barrier } from '../../src/testing';

@Entity({ tableName: 'cov_mk_counters' })
class MkCovCounter {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) value: number = 0;
  @Property({ type: 'integer' }) bucket: number = 1;
}

type Read = (em: EntityManager, id: number) => Promise<number>;
const qb = (em: EntityManager, id: number) => em.createQueryBuilder(MkCovCounter, 'c').select('*').where({ id });

/** MikroORM entry points whose rows a `@Pessimistic` method locks. */
const LOCKED: Array<{ tag: string; read: Read }> = [
  { tag: '[coverage mikro-orm @Pessimistic em.findOne locked]', read: async (em, id) => (await em.findOne(MkCovCounter, id))!.value },
  { tag: '[coverage mikro-orm @Pessimistic em.findOneOrFail locked]', read: async (em, id) => (await em.findOneOrFail(MkCovCounter, id)).value },
  { tag: '[coverage mikro-orm @Pessimistic em.find locked]', read: async (em, id) => (await em.find(MkCovCounter, { id }))[0].value },
  { tag: '[coverage mikro-orm @Pessimistic em.findAll locked]', read: async (em, id) => (await em.findAll(MkCovCounter, { where: { id } }))[0].value },
  { tag: '[coverage mikro-orm @Pessimistic em.findAndCount locked]', read: async (em, id) => (await em.findAndCount(MkCovCounter, { id }))[0][0].value },
  {
    tag: '[coverage mikro-orm @Pessimistic em.findByCursor locked]',
    read: async (em, id) => (await em.findByCursor(MkCovCounter, { id }, { first: 1, orderBy: { id: 'asc' } })).items[0].value,
  },
  { tag: '[coverage mikro-orm @Pessimistic repository.findOne locked]', read: async (em, id) => (await em.getRepository(MkCovCounter).findOne(id))!.value },
  { tag: '[coverage mikro-orm @Pessimistic repository.find locked]', read: async (em, id) => (await em.getRepository(MkCovCounter).find({ id }))[0].value },
  { tag: '[coverage mikro-orm @Pessimistic qb.getSingleResult locked]', read: async (em, id) => (await qb(em, id).getSingleResult())!.value },
  { tag: '[coverage mikro-orm @Pessimistic qb.getResult locked]', read: async (em, id) => (await qb(em, id).getResult())[0].value },
  { tag: '[coverage mikro-orm @Pessimistic qb.getResultList locked]', read: async (em, id) => (await qb(em, id).getResultList())[0].value },
  { tag: '[coverage mikro-orm @Pessimistic qb.getResultAndCount locked]', read: async (em, id) => (await qb(em, id).getResultAndCount())[0][0].value },
  { tag: '[coverage mikro-orm @Pessimistic qb.then locked]', read: async (em, id) => (await qb(em, id))[0].value },
  {
    tag: '[coverage mikro-orm @Pessimistic qb.execute locked]',
    read: async (em, id) => Number((await em.createQueryBuilder(MkCovCounter).select('value').where({ id }).execute<Array<{ value: number }>>())[0].value),
  },
  {
    tag: "[coverage mikro-orm @Pessimistic qb.execute('get')(built-before) locked]",
    read: async (em, id) => {
      const q = em.qb(MkCovCounter).select('value').where({ id });
      q.getFormattedQuery(); // the SELECT is built before it runs: the clause still goes on it
      return Number((await q.execute<{ value: number }>('get')).value);
    },
  },
];

/** Refused by name inside a `@Pessimistic` method: no row lock makes their answer exact. */
const REFUSED: Array<{ tag: string; call: RegExp; run: (em: EntityManager) => Promise<unknown> }> = [
  { tag: '[coverage mikro-orm @Pessimistic em.count refused]', call: /count\(\) on MkCovCounter/, run: (em) => em.count(MkCovCounter, { bucket: 1 }) },
  {
    tag: '[coverage mikro-orm @Pessimistic repository.count refused]',
    call: /count\(\) on MkCovCounter/,
    run: (em) => em.getRepository(MkCovCounter).count({ bucket: 1 }),
  },
  {
    tag: '[coverage mikro-orm @Pessimistic qb.getCount refused]',
    call: /qb\.getCount\(\) on MkCovCounter/,
    run: (em) => em.createQueryBuilder(MkCovCounter).where({ bucket: 1 }).getCount(),
  },
  {
    tag: '[coverage mikro-orm @Pessimistic qb.count refused]',
    call: /qb\.getCount\(\) on MkCovCounter/,
    run: (em) => em.createQueryBuilder(MkCovCounter).count().where({ bucket: 1 }).execute('get'),
  },
  {
    tag: '[coverage mikro-orm @Pessimistic qb.execute(aggregate) refused]',
    call: /qb\.execute\(\)\/getResult\(\) on MkCovCounter.*aggregate \(SUM\)/,
    run: (em) => em.createQueryBuilder(MkCovCounter).select(raw('sum(value) as s')).where({ bucket: 1 }).execute('get'),
  },
  {
    tag: '[coverage mikro-orm @Pessimistic qb.execute(groupBy) refused]',
    call: /qb\.execute\(\)\/getResult\(\) on MkCovCounter.*GROUP BY/,
    run: (em) => em.createQueryBuilder(MkCovCounter).select('bucket').groupBy('bucket').execute(),
  },
  {
    tag: '[coverage mikro-orm @Pessimistic qb.execute(distinct) refused]',
    call: /qb\.execute\(\)\/getResult\(\) on MkCovCounter.*DISTINCT/,
    run: (em) => em.createQueryBuilder(MkCovCounter).select('bucket', true).execute(),
  },
];

describeEachMikroBackend('coverage: @Pessimistic method reads', [MkCovCounter], (env) => {
  const N = 6;
  const em = (orm: MikroORM) => orm.em as unknown as EntityManager;

  async function newCounter(): Promise<number> {
    const seed = env.orm.em.fork();
    const row = seed.create(MkCovCounter, { value: 0, bucket: 1 });
    await seed.flush();
    return row.id;
  }

  async function increments(read: Read, wrap: (body: () => Promise<void>) => Promise<void>): Promise<number> {
    const id = await newCounter();
    const failures = await raceIncrements(N, wrap, async () => {
      const value = await read(em(env.orm), id);
      await sleep(40);
      await em(env.orm).nativeUpdate(MkCovCounter, { id }, { value: value + 1 });
    });
    expect(failures).to.deep.equal([]);
    return (await env.orm.em.fork().findOneOrFail(MkCovCounter, id)).value;
  }

  for (const row of LOCKED) {
    it(`${row.tag} ${N} read-modify-writes are exact; the control in a plain transaction loses some`, async () => {
      expect(await increments(row.read, (body) => transaction(body)), 'control').to.be.lessThan(N);
      expect(await increments(row.read, (body) => withPessimistic(body))).to.equal(N);
    });
  }

  for (const row of REFUSED) {
    it(`${row.tag} throws LockConfigError naming the call and what to use instead; outside the method it runs`, async () => {
      await newCounter();
      const error = await rejection(withPessimistic(() => row.run(em(env.orm))));
      expect(error).to.be.instanceOf(LockConfigError);
      expect(error.message).to.match(row.call).and.to.contain('find()/getMany()');
      await transaction(() => row.run(em(env.orm)));
    });
  }

  it('a count-based "at most 3" check: in a plain transaction it lets more in; inside @Pessimistic it is refused, never inexact', async () => {
    const bucket = 1000 + Math.floor(Math.random() * 1e6);
    /** `allCounted` (the control's only): every caller has counted before anyone inserts. */
    const admit = (allCounted?: Barrier) => async () => {
      const counting = em(env.orm).createQueryBuilder(MkCovCounter).where({ bucket }).getCount();
      const taken = await (allCounted ? allCounted.wait(counting) : counting);
      if (taken < 3) await em(env.orm).insert(MkCovCounter, { value: 0, bucket });
    };
    expect(await raceIncrements(N, (body) => transaction(body), admit(new Barrier(N)))).to.deep.equal([]);
    expect(await env.orm.em.fork().count(MkCovCounter, { bucket }), 'control: every caller counted 0 and came in').to.equal(N);
    const failures = await raceIncrements(N, (body) => withPessimistic(body), admit());
    expect(failures).to.have.length(N);
    for (const f of failures) expect(f).to.be.instanceOf(LockConfigError);
  });

  it("a query builder of an EntityManager outside the method's transaction is refused, not read unlocked", async () => {
    const id = await newCounter();
    const outside = env.orm.em.fork() as unknown as EntityManager;
    const error = await rejection(withPessimistic(() => qb(outside, id).getSingleResult()));
    expect(error).to.be.instanceOf(LockConfigError);
    expect(error.message).to.contain('a read of MkCovCounter would not be locked');
  });

  it('[coverage mikro-orm @Pessimistic em.execute cannot-be-seen] a raw SQL string read inside the method is not locked (it loses increments like the control)', async () => {
    const read: Read = async (e, id) => Number((await e.execute(`SELECT value FROM cov_mk_counters WHERE id = ${Number(id)}`))[0].value);
    expect(await increments(read, (body) => withPessimistic(body))).to.be.lessThan(N);
  });

  it('[coverage mikro-orm @Pessimistic em.getConnection().execute cannot-be-seen] a raw SQL string on the connection is not locked (it loses increments like the control)', async () => {
    const read: Read = async (e, id) =>
      Number(
        (
          await (e as unknown as CoreEntityManager)
            .getConnection()
            .execute(`SELECT value FROM cov_mk_counters WHERE id = ${Number(id)}`, [], 'all', e.getTransactionContext())
        )[0].value,
      );
    expect(await increments(read, (body) => withPessimistic(body))).to.be.lessThan(N);
  });
});
