import { expect } from 'chai';
import { Column, Entity, PrimaryGeneratedColumn, type Repository } from 'typeorm';
import { LockConfigError, transaction, withPessimistic } from '../../src';
import { describeEachBackend } from '../support/suite';
import { raceIncrements, rejection, repositoryHas, sleep } from './support';

@Entity('cov_pes_counters')
class CovCounter {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int', default: 0 }) value!: number;
  @Column({ type: 'int', default: 1 }) bucket!: number;
}

type Read = (repo: Repository<CovCounter>, id: number) => Promise<number>;
const qb = (repo: Repository<CovCounter>, id: number) => repo.createQueryBuilder('c').where('c.id = :id', { id });

/** Entry points whose rows a `@Pessimistic` method locks: each reads the counter's value. */
const LOCKED: Array<{ tag: string; method?: string; read: Read }> = [
  { tag: '[coverage typeorm @Pessimistic repository.findOne locked]', read: async (r, id) => (await r.findOne({ where: { id } }))!.value },
  { tag: '[coverage typeorm @Pessimistic repository.findOneBy locked]', read: async (r, id) => (await r.findOneBy({ id }))!.value },
  { tag: '[coverage typeorm @Pessimistic repository.findOneOrFail locked]', read: async (r, id) => (await r.findOneOrFail({ where: { id } })).value },
  { tag: '[coverage typeorm @Pessimistic repository.findOneByOrFail locked]', read: async (r, id) => (await r.findOneByOrFail({ id })).value },
  { tag: '[coverage typeorm @Pessimistic repository.find locked]', read: async (r, id) => (await r.find({ where: { id } }))[0].value },
  { tag: '[coverage typeorm @Pessimistic repository.findBy locked]', read: async (r, id) => (await r.findBy({ id }))[0].value },
  { tag: '[coverage typeorm @Pessimistic repository.findAndCount locked]', read: async (r, id) => (await r.findAndCount({ where: { id } }))[0][0].value },
  { tag: '[coverage typeorm @Pessimistic repository.findAndCountBy locked]', read: async (r, id) => (await r.findAndCountBy({ id }))[0][0].value },
  {
    tag: '[coverage typeorm@0.3 @Pessimistic repository.findOneById locked]',
    method: 'findOneById',
    read: async (r, id) => (await (r as any).findOneById(id)).value,
  },
  {
    tag: '[coverage typeorm@0.3 @Pessimistic repository.findByIds locked]',
    method: 'findByIds',
    read: async (r, id) => (await (r as any).findByIds([id]))[0].value,
  },
  { tag: '[coverage typeorm @Pessimistic qb.getOne locked]', read: async (r, id) => (await qb(r, id).getOne())!.value },
  { tag: '[coverage typeorm @Pessimistic qb.getOneOrFail locked]', read: async (r, id) => (await qb(r, id).getOneOrFail()).value },
  { tag: '[coverage typeorm @Pessimistic qb.getMany locked]', read: async (r, id) => (await qb(r, id).getMany())[0].value },
  { tag: '[coverage typeorm @Pessimistic qb.getManyAndCount locked]', read: async (r, id) => (await qb(r, id).getManyAndCount())[0][0].value },
  { tag: '[coverage typeorm @Pessimistic qb.getRawAndEntities locked]', read: async (r, id) => (await qb(r, id).getRawAndEntities()).entities[0].value },
  {
    tag: '[coverage typeorm @Pessimistic qb.getRawOne locked]',
    read: async (r, id) => Number((await qb(r, id).select('c.value', 'value').getRawOne())!.value),
  },
  {
    tag: '[coverage typeorm @Pessimistic qb.getRawMany locked]',
    read: async (r, id) => Number((await qb(r, id).select('c.value', 'value').getRawMany())[0].value),
  },
];

/** Entry points a `@Pessimistic` method refuses by name: no row lock makes their answer exact. */
const REFUSED: Array<{
  tag: string;
  method?: string;
  call: RegExp;
  driverNeeds?: string;
  run: (repo: Repository<CovCounter>, id: number) => Promise<unknown>;
}> = [
  { tag: '[coverage typeorm @Pessimistic repository.count refused]', call: /count\(\)/, run: (r) => r.count({ where: { bucket: 1 } }) },
  { tag: '[coverage typeorm @Pessimistic repository.countBy refused]', call: /countBy\(\)/, run: (r) => r.countBy({ bucket: 1 }) },
  {
    tag: '[coverage typeorm @Pessimistic repository.exists refused]',
    method: 'exists',
    call: /exists\(\)/,
    run: (r) => (r as any).exists({ where: { bucket: 1 } }),
  },
  { tag: '[coverage typeorm @Pessimistic repository.existsBy refused]', call: /existsBy\(\)/, run: (r) => r.existsBy({ bucket: 1 }) },
  {
    tag: '[coverage typeorm@0.3 @Pessimistic repository.exist refused]',
    method: 'exist',
    call: /exists\(\)/,
    run: (r) => (r as any).exist({ where: { bucket: 1 } }),
  },
  { tag: '[coverage typeorm @Pessimistic repository.sum refused]', call: /sum\(\)/, run: (r) => r.sum('value', { bucket: 1 }) },
  { tag: '[coverage typeorm @Pessimistic repository.average refused]', call: /average\(\)/, run: (r) => r.average('value', { bucket: 1 }) },
  { tag: '[coverage typeorm @Pessimistic repository.minimum refused]', call: /minimum\(\)/, run: (r) => r.minimum('value', { bucket: 1 }) },
  { tag: '[coverage typeorm @Pessimistic repository.maximum refused]', call: /maximum\(\)/, run: (r) => r.maximum('value', { bucket: 1 }) },
  { tag: '[coverage typeorm @Pessimistic qb.getCount refused]', call: /getCount\(\)/, run: (r, id) => qb(r, id).getCount() },
  { tag: '[coverage typeorm @Pessimistic qb.getExists refused]', call: /getExists\(\)/, run: (r, id) => qb(r, id).getExists() },
  {
    tag: '[coverage typeorm @Pessimistic qb.stream refused]',
    call: /stream\(\)/,
    driverNeeds: 'a stream driver (pg-query-stream)',
    run: (r, id) => qb(r, id).stream(),
  },
  {
    tag: '[coverage typeorm @Pessimistic qb.getRawOne(aggregate) refused]',
    call: /getRawOne\(\)\/getRawMany\(\).*aggregate \(SUM\)/,
    run: (r) => r.createQueryBuilder('c').select('SUM(c.value)', 's').where('c.bucket = 1').getRawOne(),
  },
  {
    tag: '[coverage typeorm @Pessimistic qb.getRawMany(groupBy) refused]',
    call: /getRawOne\(\)\/getRawMany\(\).*GROUP BY/,
    run: (r) => r.createQueryBuilder('c').select('c.bucket', 'b').groupBy('c.bucket').getRawMany(),
  },
];

describeEachBackend('coverage: @Pessimistic method reads', [CovCounter], (env) => {
  const N = 6;
  const repo = () => env.ds.getRepository(CovCounter);

  async function increments(read: Read, wrap: (body: () => Promise<void>) => Promise<void>): Promise<number> {
    const counters = repo();
    const { id } = await counters.save(counters.create({ value: 0 }));
    const failures = await raceIncrements(N, wrap, async () => {
      const value = await read(counters, id);
      await sleep(40);
      await counters.update(id, { value: value + 1 });
    });
    expect(failures).to.deep.equal([]);
    return (await counters.findOneByOrFail({ id })).value;
  }

  for (const row of LOCKED) {
    if (row.method && !repositoryHas(row.method)) continue;
    it(`${row.tag} ${N} read-modify-writes are exact; the control in a plain transaction loses some`, async () => {
      const control = await increments(row.read, (body) => transaction(body));
      expect(control, 'the control must lose increments').to.be.lessThan(N);
      expect(await increments(row.read, (body) => withPessimistic(body))).to.equal(N);
    });
  }

  for (const row of REFUSED) {
    if (row.method && !repositoryHas(row.method)) continue;
    it(`${row.tag} throws LockConfigError naming the call and what to use instead`, async () => {
      const { id } = await repo().save(repo().create({ value: 0 }));
      const error = await rejection(withPessimistic(() => row.run(repo(), id)));
      expect(error).to.be.instanceOf(LockConfigError);
      expect(error.message).to.match(row.call).and.to.contain('find()/getMany()').and.to.contain('withPessimistic()');
      // outside a @Pessimistic method the same call runs as TypeORM's
      if (!row.driverNeeds) await transaction(() => row.run(repo(), id));
    });
  }

  it('[coverage typeorm @Pessimistic query cannot-be-seen] a raw SQL string read inside the method is not locked (it loses increments like the control)', async () => {
    const table = env.ds.getMetadata(CovCounter).tableName;
    const read: Read = async (_r, id) => Number((await env.ds.query(`SELECT value FROM ${table} WHERE id = ${Number(id)}`))[0].value);
    expect(await increments(read, (body) => withPessimistic(body))).to.be.lessThan(N);
  });
});
