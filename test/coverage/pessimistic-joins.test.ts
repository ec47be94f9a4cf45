/**
 * Joined reads inside a `@Pessimistic` method. On PostgreSQL a query-builder read with a join and
 * a find with relations loaded by a join lock the main entity's rows (`FOR UPDATE OF <main
 * alias>`): each races read-modify-writes against a control in a plain transaction that loses
 * some. MariaDB has no `FOR UPDATE OF` (the lock would take the joined tables' rows too), so the
 * same reads are refused by name there, and relations loaded by separate queries are locked.
 */
import { Entity as MkEntity, ManyToOne as MkManyToOne, PrimaryKey, Property, type MikroORM } from '@mikro-orm/core';
import type { EntityManager as MkEntityManager } from '@mikro-orm/knex';
import { expect } from 'chai';
import { Column, Entity, ManyToOne, PrimaryGeneratedColumn, type Repository } from 'typeorm';
import { LockConfigError, transaction, withPessimistic } from '../../src';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { describeEachBackend } from '../support/suite';
import { raceIncrements, rejection, sleep } from './support';

/** A joined read: locked on PostgreSQL (its tag), refused on MariaDB (its tag). */
interface JoinedRead<R> {
  postgres: string;
  mariadb: string;
  read: R;
}

@Entity('cov_join_owners')
class CovJoinOwner {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) name!: string;
}

@Entity('cov_join_counters')
class CovJoinCounter {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int', default: 0 }) value!: number;
  @ManyToOne(() => CovJoinOwner, { nullable: true }) owner!: CovJoinOwner | null;
}

@MkEntity({ tableName: 'cov_mk_join_owners' })
class MkJoinOwner {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 40 }) name!: string;
}

@MkEntity({ tableName: 'cov_mk_join_counters' })
class MkJoinCounter {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) value: number = 0;
  @MkManyToOne(() => MkJoinOwner, { nullable: true }) owner?: MkJoinOwner;
}

const N = 6;

describeEachBackend('coverage: @Pessimistic joined reads (TypeORM)', [CovJoinOwner, CovJoinCounter], (env) => {
  type Read = (repo: Repository<CovJoinCounter>, id: number) => Promise<number>;
  const READS: Array<JoinedRead<Read>> = [
    {
      postgres: '[coverage typeorm @Pessimistic qb.getOne(leftJoinAndSelect) locked@postgres]',
      mariadb: '[coverage typeorm @Pessimistic qb.getOne(leftJoinAndSelect) refused@mariadb]',
      read: async (r, id) => (await r.createQueryBuilder('c').leftJoinAndSelect('c.owner', 'o').where('c.id = :id', { id }).getOne())!.value,
    },
    {
      postgres: '[coverage typeorm @Pessimistic qb.getMany(innerJoin) locked@postgres]',
      mariadb: '[coverage typeorm @Pessimistic qb.getMany(innerJoin) refused@mariadb]',
      read: async (r, id) => (await r.createQueryBuilder('c').innerJoin('c.owner', 'o').where('c.id = :id', { id }).getMany())[0].value,
    },
    {
      postgres: '[coverage typeorm @Pessimistic repository.findOne(relations,relationLoadStrategy-query) locked@postgres]',
      mariadb: '[coverage typeorm @Pessimistic repository.findOne(relations,relationLoadStrategy-query) refused@mariadb]',
      // TypeORM's 'query' strategy reads a many-to-one with a join of its own
      read: async (r, id) => (await r.findOne({ where: { id }, relations: { owner: true }, relationLoadStrategy: 'query' }))!.value,
    },
    {
      postgres: '[coverage typeorm @Pessimistic repository.findOne(relations) locked@postgres]',
      mariadb: '[coverage typeorm @Pessimistic repository.findOne(relations) refused@mariadb]',
      read: async (r, id) => (await r.findOne({ where: { id }, relations: { owner: true } }))!.value,
    },
  ];
  /** The way that works on both: the entity without joins, then the related entity by its key. */
  const SEPARATE: Read = async (r, id) => {
    const counter = await r.findOneByOrFail({ id });
    const ownerId = (await r.createQueryBuilder('c').select('c.ownerId', 'ownerId').where('c.id = :id', { id }).getRawOne())!.ownerId;
    await r.manager.getRepository(CovJoinOwner).findOneByOrFail({ id: ownerId });
    return counter.value;
  };

  async function increments(read: Read, wrap: (body: () => Promise<void>) => Promise<void>): Promise<number> {
    const counters = env.ds.getRepository(CovJoinCounter);
    const owner = await env.ds.getRepository(CovJoinOwner).save({ name: 'o' });
    const { id } = await counters.save(counters.create({ value: 0, owner }));
    const failures = await raceIncrements(N, wrap, async () => {
      const value = await read(counters, id);
      await sleep(40);
      await counters.update(id, { value: value + 1 });
    });
    expect(failures).to.deep.equal([]);
    return (await counters.findOneByOrFail({ id })).value;
  }

  joinedRows(
    () => env.name,
    READS,
    increments,
    async (read) => {
      const counters = env.ds.getRepository(CovJoinCounter);
      const { id } = await counters.save(counters.create({ value: 0 }));
      return rejection(withPessimistic(() => read(counters, id)));
    },
  );

  it('[coverage typeorm @Pessimistic repository.findOneBy(then-relation-by-key) locked] the entity without joins, then the related one by its key: exact on both databases; the control loses some', async () => {
    expect(await increments(SEPARATE, (body) => transaction(body)), 'control').to.be.lessThan(N);
    expect(await increments(SEPARATE, (body) => withPessimistic(body))).to.equal(N);
  });
});

/** The rows of `reads` on the current backend: a race with its control on PostgreSQL, the refusal on MariaDB. */
function joinedRows<R>(
  backend: () => string,
  reads: Array<JoinedRead<R>>,
  increments: (read: R, wrap: (body: () => Promise<void>) => Promise<void>) => Promise<number>,
  refusal: (read: R) => Promise<any>,
): void {
  for (const row of reads) {
    it(`${row.postgres} / ${row.mariadb}: exact on PostgreSQL (the control loses some); refused by name on MariaDB`, async function () {
      if (backend() === 'postgres') {
        expect(await increments(row.read, (body) => transaction(body)), 'control').to.be.lessThan(N);
        expect(await increments(row.read, (body) => withPessimistic(body))).to.equal(N);
      } else {
        const error = await refusal(row.read);
        expect(error).to.be.instanceOf(LockConfigError);
        expect(error.message)
          .to.match(/joins/)
          .and.to.match(/FOR UPDATE OF/);
      }
    });
  }
}

describeEachMikroBackend('coverage: @Pessimistic joined reads', [MkJoinOwner, MkJoinCounter], (env) => {
  type Read = (em: MkEntityManager, id: number) => Promise<number>;
  const READS: Array<JoinedRead<Read>> = [
    {
      postgres: '[coverage mikro-orm @Pessimistic em.findOne(populate,strategy-joined) locked@postgres]',
      mariadb: '[coverage mikro-orm @Pessimistic em.findOne(populate,strategy-joined) refused@mariadb]',
      read: async (em, id) => (await em.findOne(MkJoinCounter, id, { populate: ['owner'], strategy: 'joined' }))!.value,
    },
    {
      postgres: '[coverage mikro-orm @Pessimistic qb.getSingleResult(leftJoinAndSelect) locked@postgres]',
      mariadb: '[coverage mikro-orm @Pessimistic qb.getSingleResult(leftJoinAndSelect) refused@mariadb]',
      read: async (em, id) =>
        (await em.createQueryBuilder(MkJoinCounter, 'c').select('*').leftJoinAndSelect('c.owner', 'o').where({ id }).getSingleResult())!.value,
    },
  ];
  const SEPARATE: Read = async (em, id) => (await em.findOne(MkJoinCounter, id, { populate: ['owner'], strategy: 'select-in' }))!.value;
  const em = (orm: MikroORM) => orm.em as unknown as MkEntityManager;

  async function increments(read: Read, wrap: (body: () => Promise<void>) => Promise<void>): Promise<number> {
    const seed = env.orm.em.fork();
    const owner = seed.create(MkJoinOwner, { name: 'o' });
    const row = seed.create(MkJoinCounter, { value: 0, owner });
    await seed.flush();
    const id = row.id;
    const failures = await raceIncrements(N, wrap, async () => {
      const value = await read(em(env.orm), id);
      await sleep(40);
      await em(env.orm).nativeUpdate(MkJoinCounter, { id }, { value: value + 1 });
    });
    expect(failures).to.deep.equal([]);
    return (await env.orm.em.fork().findOneOrFail(MkJoinCounter, id)).value;
  }

  joinedRows(
    () => env.name,
    READS,
    increments,
    async (read) => {
      const seed = env.orm.em.fork();
      const row = seed.create(MkJoinCounter, { value: 0 });
      await seed.flush();
      return rejection(withPessimistic(() => read(em(env.orm), row.id)));
    },
  );

  it('[coverage mikro-orm @Pessimistic em.findOne(populate,strategy-select-in) locked] relations loaded by separate queries: exact on both databases; the control loses some', async () => {
    expect(await increments(SEPARATE, (body) => transaction(body)), 'control').to.be.lessThan(N);
    expect(await increments(SEPARATE, (body) => withPessimistic(body))).to.equal(N);
  });
});
