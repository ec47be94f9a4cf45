import { Entity, PrimaryKey, Property, type EntityManager, type MikroORM } from '@mikro-orm/core';
import { expect } from 'chai';
import { LockConfigError, transaction, withPessimistic } from '../../src';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { raceIncrements, rejection, sleep } from './support';

@Entity({ tableName: 'cov_mk_counters' })
class MkCovCounter {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) value: number = 0;
  @Property({ type: 'integer' }) bucket: number = 1;
}

type Read = (em: EntityManager, id: number) => Promise<number>;

/** MikroORM entry points whose rows a `@Pessimistic` method locks. */
const LOCKED: Array<{ tag: string; read: Read }> = [
  { tag: '[coverage mikro-orm @Pessimistic em.findOne locked]', read: async (em, id) => (await em.findOne(MkCovCounter, id))!.value },
  { tag: '[coverage mikro-orm @Pessimistic em.findOneOrFail locked]', read: async (em, id) => (await em.findOneOrFail(MkCovCounter, id)).value },
  { tag: '[coverage mikro-orm @Pessimistic em.find locked]', read: async (em, id) => (await em.find(MkCovCounter, { id }))[0].value },
  { tag: '[coverage mikro-orm @Pessimistic em.findAndCount locked]', read: async (em, id) => (await em.findAndCount(MkCovCounter, { id }))[0][0].value },
  { tag: '[coverage mikro-orm @Pessimistic repository.findOne locked]', read: async (em, id) => (await em.getRepository(MkCovCounter).findOne(id))!.value },
];

/** Refused by name inside a `@Pessimistic` method. */
const REFUSED: Array<{ tag: string; run: (em: EntityManager) => Promise<unknown> }> = [
  { tag: '[coverage mikro-orm @Pessimistic em.count refused]', run: (em) => em.count(MkCovCounter, { bucket: 1 }) },
  { tag: '[coverage mikro-orm @Pessimistic repository.count refused]', run: (em) => em.getRepository(MkCovCounter).count({ bucket: 1 }) },
];

describeEachMikroBackend('coverage: @Pessimistic method reads', [MkCovCounter], (env) => {
  const N = 6;
  const em = (orm: MikroORM) => orm.em as unknown as EntityManager;

  async function increments(read: Read, wrap: (body: () => Promise<void>) => Promise<void>): Promise<number> {
    const seed = env.orm.em.fork();
    const row = seed.create(MkCovCounter, { value: 0, bucket: 1 });
    await seed.flush();
    const failures = await raceIncrements(N, wrap, async () => {
      const value = await read(em(env.orm), row.id);
      await sleep(40);
      await em(env.orm).nativeUpdate(MkCovCounter, { id: row.id }, { value: value + 1 });
    });
    expect(failures).to.deep.equal([]);
    return (await env.orm.em.fork().findOneOrFail(MkCovCounter, row.id)).value;
  }

  for (const row of LOCKED) {
    it(`${row.tag} ${N} read-modify-writes are exact; the control in a plain transaction loses some`, async () => {
      expect(await increments(row.read, (body) => transaction(body)), 'control').to.be.lessThan(N);
      expect(await increments(row.read, (body) => withPessimistic(body))).to.equal(N);
    });
  }

  for (const row of REFUSED) {
    it(`${row.tag} throws LockConfigError naming the call and what to use instead; outside the method it counts`, async () => {
      const error = await rejection(withPessimistic(() => row.run(em(env.orm))));
      expect(error).to.be.instanceOf(LockConfigError);
      expect(error.message).to.contain('count() on MkCovCounter cannot be locked').and.to.contain('find()/getMany()');
      expect(await transaction(() => row.run(em(env.orm)))).to.be.a('number');
    });
  }

  it('[coverage mikro-orm @Pessimistic em.execute cannot-be-seen] a raw SQL string read inside the method is not locked (it loses increments like the control)', async () => {
    const read: Read = async (e, id) => Number((await (e as any).execute(`SELECT value FROM cov_mk_counters WHERE id = ${Number(id)}`))[0].value);
    expect(await increments(read, (body) => withPessimistic(body))).to.be.lessThan(N);
  });
});
