/**
 * MikroORM's driver methods (`em.getDriver().find / findOne / nativeInsert / nativeUpdate /
 * nativeDelete`), below the EntityManager. Reads inside a `@Pessimistic` method are locked (the
 * driver's `find` is where ormlock puts the lock clause on every entity read). Writes of an entity
 * with `@AdvisoryLock(entity => key)` are not seen: the EntityManager's writes are where ormlock
 * computes the keys, and a driver call passes by them, as a raw SQL string does. The tests show both.
 */
import { Entity, PrimaryKey, Property } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/knex';
import { expect } from 'chai';
import { AdvisoryLock, transaction, withAdvisoryLock, withPessimistic } from '../../src';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { orderAgainstHolder, raceIncrements, sleep } from './support';

const keyOf = (section: number) => `mkdrv:${process.pid}:section:${section}`;

@AdvisoryLock((d: MkDrvDoc) => keyOf(d.section))
@Entity({ tableName: 'cov_mk_drv_docs' })
class MkDrvDoc {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer', default: 0 }) section!: number;
  @Property({ type: 'integer', default: 0 }) value: number = 0;
}

type Read = (em: EntityManager, id: number) => Promise<number>;
const READS: Array<{ tag: string; read: Read }> = [
  {
    tag: '[coverage mikro-orm @Pessimistic driver.find locked]',
    read: async (em, id) => (await em.getDriver().find<MkDrvDoc>('MkDrvDoc', { id }, { ctx: em.getTransactionContext() }))[0].value!,
  },
  {
    tag: '[coverage mikro-orm @Pessimistic driver.findOne locked]',
    read: async (em, id) => (await em.getDriver().findOne<MkDrvDoc>('MkDrvDoc', { id }, { ctx: em.getTransactionContext() }))!.value!,
  },
];

type Write = (em: EntityManager, row: { id: number; section: number }) => Promise<unknown>;
const UNSEEN: Array<{ tag: string; write: Write }> = [
  {
    tag: '[coverage mikro-orm @AdvisoryLock driver.nativeInsert cannot-be-seen]',
    write: (em, row) => em.getDriver().nativeInsert('MkDrvDoc', { section: row.section, value: 1 }, { ctx: em.getTransactionContext() }),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock driver.nativeUpdate cannot-be-seen]',
    write: (em, row) => em.getDriver().nativeUpdate('MkDrvDoc', { id: row.id }, { value: 2 }, { ctx: em.getTransactionContext() }),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock driver.nativeDelete cannot-be-seen]',
    write: (em, row) => em.getDriver().nativeDelete('MkDrvDoc', { id: row.id }, { ctx: em.getTransactionContext() }),
  },
];

describeEachMikroBackend('coverage: MikroORM driver calls', [MkDrvDoc], (env) => {
  const N = 6;
  let section = 100;
  const em = () => env.orm.em as unknown as EntityManager;

  async function newRow(): Promise<{ id: number; section: number }> {
    const seed = env.orm.em.fork();
    const row = seed.create(MkDrvDoc, { section: ++section, value: 0 });
    await seed.flush();
    return { id: row.id, section: row.section };
  }

  async function increments(read: Read, wrap: (body: () => Promise<void>) => Promise<void>): Promise<number> {
    const { id } = await newRow();
    const failures = await raceIncrements(N, wrap, async () => {
      const value = await read(em(), id);
      await sleep(40);
      await em()
        .getConnection()
        .execute(`UPDATE cov_mk_drv_docs SET value = ${value + 1} WHERE id = ${id}`, [], 'run', em().getTransactionContext());
    });
    expect(failures).to.deep.equal([]);
    return (await env.orm.em.fork().findOneOrFail(MkDrvDoc, id)).value;
  }

  for (const row of READS) {
    it(`${row.tag} ${N} read-modify-writes are exact; the control in a plain transaction loses some`, async () => {
      expect(await increments(row.read, (body) => transaction(body, { dataSource: env.orm })), 'control').to.be.lessThan(N);
      expect(await increments(row.read, (body) => withPessimistic(body, { dataSource: env.orm }))).to.equal(N);
    });
  }

  for (const row of UNSEEN) {
    it(`${row.tag} does not wait for the holder of the row's key (below the EntityManager, like raw SQL)`, async () => {
      const doc = await newRow();
      const order = await orderAgainstHolder(
        (body) => withAdvisoryLock(keyOf(doc.section), body, { dataSource: env.orm }),
        () => transaction(() => row.write(em(), doc), { dataSource: env.orm }),
        5000,
      );
      expect(order).to.deep.equal(['write done', 'holder released']);
    });
  }
});
