import { expect } from 'chai';
import { EntitySchema, type Repository } from 'typeorm';
import { lock, LockConfigError, transaction, withLock, withPessimistic } from '../../src';
import { describeEachBackend } from '../support/suite';
import { raceIncrements, rejection, sleep } from './support';

interface Counter {
  id: number;
  value: number;
}
const columns = { id: { type: Number, primary: true, generated: true }, value: { type: 'int', default: 0 } } as const;

/** An EntitySchema without `target`: its rows are plain objects. */
const PlainSchema = new EntitySchema<Counter>({ name: 'CovPlainSchemaCounter', tableName: 'cov_schema_plain', columns: columns as any });

/** An EntitySchema with a `target` class. */
class TargetCounter implements Counter {
  id!: number;
  value!: number;
}
const TargetSchema = new EntitySchema<TargetCounter>({
  name: 'CovTargetSchemaCounter',
  target: TargetCounter,
  tableName: 'cov_schema_target',
  columns: columns as any,
});

describeEachBackend('coverage: TypeORM EntitySchema entities, with and without target', [PlainSchema, TargetSchema] as unknown as Function[], (env) => {
  const N = 6;
  const variants = [
    { name: 'without target', schema: PlainSchema as EntitySchema<any> | Function },
    { name: 'with target', schema: TargetCounter as EntitySchema<any> | Function },
  ];

  async function increments(
    schema: EntitySchema<any> | Function,
    wrap: (body: () => Promise<void>) => Promise<void>,
    step: (repo: Repository<Counter>, id: number) => Promise<void>,
  ) {
    const repo = env.ds.getRepository<Counter>(schema);
    const { id } = await repo.save(repo.create({ value: 0 }));
    const failures = await raceIncrements(N, wrap, () => step(repo, id));
    expect(failures).to.deep.equal([]);
    return (await repo.findOneByOrFail({ id })).value;
  }

  const readModifyWrite = async (repo: Repository<Counter>, id: number) => {
    const row = await repo.findOneByOrFail({ id });
    await sleep(40);
    row.value += 1;
    await repo.save(row);
  };

  for (const { name, schema } of variants) {
    it(`[coverage typeorm-entityschema @Pessimistic repository.findOneBy locked] ${name}: withPessimistic around findOneBy + save is exact; the control in a plain transaction loses`, async () => {
      expect(await increments(schema, (body) => transaction(body), readModifyWrite), 'control').to.be.lessThan(N);
      expect(await increments(schema, (body) => withPessimistic(body), readModifyWrite)).to.equal(N);
    });

    it(`[coverage typeorm-entityschema lock() withLock locked] ${name}: withLock(loaded row) is exact (also with { dataSource }); the control loses`, async () => {
      const unlocked = async (repo: Repository<Counter>, id: number) => {
        const row = await repo.findOneByOrFail({ id });
        await sleep(40);
        row.value += 1;
        await repo.save(row);
      };
      expect(await increments(schema, (body) => transaction(body), unlocked), 'control').to.be.lessThan(N);
      const locked = async (repo: Repository<Counter>, id: number) => {
        const row = await repo.findOneByOrFail({ id });
        await withLock(
          row,
          async (r) => {
            await sleep(40);
            r.value += 1;
            await repo.save(r);
          },
          { dataSource: env.ds },
        );
      };
      expect(await increments(schema, (body) => body(), locked)).to.equal(N);
      const plainLock = async (repo: Repository<Counter>, id: number) => {
        const row = await repo.findOneByOrFail({ id });
        await transaction(async () => {
          await lock(row);
          await sleep(40);
          row.value += 1;
          await repo.save(row);
        });
      };
      expect(await increments(schema, (body) => body(), plainLock)).to.equal(N);
    });
  }

  it('[coverage typeorm-entityschema lock() lock(never-loaded-plain-object) refused] a plain object TypeORM never loaded or saved: LockConfigError saying to load it first or to give the schema a target', async () => {
    const error = await rejection(transaction(() => lock({ id: 1, value: 0 }, { dataSource: env.ds })));
    expect(error).to.be.instanceOf(LockConfigError);
    expect(error.message).to.contain('plain object').and.to.contain('give the EntitySchema a `target` class');
    const again = await rejection(transaction(() => lock({ id: 1, value: 0 })));
    expect(again.message).to.contain('plain object');
  });
});
