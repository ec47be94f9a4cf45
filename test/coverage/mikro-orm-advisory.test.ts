import { Entity, PrimaryKey, Property } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/knex';
import { expect } from 'chai';
import { AdvisoryLock, LockConfigError, transaction, withAdvisoryLock } from '../../src';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { orderAgainstHolder, rejection } from './support';

/** The key comes from a column that is neither in a native update's WHERE nor in its SET: only the row knows it. */
const keyOf = (section: number) => `mkcov:${process.pid}:section:${section}`;

@AdvisoryLock((d: MkCovDoc) => keyOf(d.section))
@Entity({ tableName: 'cov_mk_adv_docs' })
class MkCovDoc {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer', default: 0 }) section!: number;
  @Property({ type: 'string', length: 40 }) title: string = '';
}

/** The control: the same table without the declaration. */
@Entity({ tableName: 'cov_mk_adv_plain_docs' })
class MkCovPlainDoc {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer', default: 0 }) section!: number;
  @Property({ type: 'string', length: 40 }) title: string = '';
}

type Doc = typeof MkCovDoc | typeof MkCovPlainDoc;
type Write = (em: EntityManager, E: Doc, row: { id: number; section: number; title: string }) => Promise<unknown>;

/** Writes that take the row's key: each must wait for the holder of its section's key. */
const LOCKED: Array<{ tag: string; write: Write }> = [
  {
    tag: '[coverage mikro-orm @AdvisoryLock em.persist+flush(insert) locked]',
    write: (em, E, row) => em.persist(em.create(E, { section: row.section, title: 'new' })).flush(),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock em.flush(update) locked]',
    write: async (em, E, row) => {
      (await em.findOneOrFail(E, row.id)).title = 'flushed';
      await em.flush();
    },
  },
  { tag: '[coverage mikro-orm @AdvisoryLock em.remove+flush locked]', write: async (em, E, row) => em.remove(await em.findOneOrFail(E, row.id)).flush() },
  { tag: '[coverage mikro-orm @AdvisoryLock em.insert locked]', write: (em, E, row) => em.insert(E, { section: row.section, title: 'inserted' }) },
  {
    tag: '[coverage mikro-orm @AdvisoryLock em.insert(entity) locked]',
    write: (em, E, row) => em.insert(em.create(E, { section: row.section, title: 'entity' }, { persist: false })),
  },
  { tag: '[coverage mikro-orm @AdvisoryLock em.insertMany locked]', write: (em, E, row) => em.insertMany(E, [{ section: row.section, title: 'many' }]) },
  { tag: '[coverage mikro-orm @AdvisoryLock em.upsert locked]', write: (em, E, row) => em.upsert(E, { id: row.id, section: row.section, title: 'upserted' }) },
  {
    tag: '[coverage mikro-orm @AdvisoryLock em.upsertMany locked]',
    write: (em, E, row) => em.upsertMany(E, [{ id: row.id, section: row.section, title: 'upserted' }]),
  },
  { tag: '[coverage mikro-orm @AdvisoryLock em.nativeUpdate({pk}) locked]', write: (em, E, row) => em.nativeUpdate(E, { id: row.id }, { title: 'by pk' }) },
  { tag: '[coverage mikro-orm @AdvisoryLock em.nativeUpdate(id) locked]', write: (em, E, row) => em.nativeUpdate(E, row.id, { title: 'by id' }) },
  {
    tag: '[coverage mikro-orm @AdvisoryLock em.nativeUpdate({pk:$in}) locked]',
    write: (em, E, row) => em.nativeUpdate(E, { id: { $in: [row.id] } }, { title: 'in' }),
  },
  { tag: '[coverage mikro-orm @AdvisoryLock em.nativeDelete({pk}) locked]', write: (em, E, row) => em.nativeDelete(E, { id: row.id }) },
  {
    tag: '[coverage mikro-orm @AdvisoryLock repository.nativeUpdate({pk}) locked]',
    write: (em, E, row) => em.getRepository(E as typeof MkCovDoc).nativeUpdate({ id: row.id }, { title: 'repo' }),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock repository.nativeDelete({pk}) locked]',
    write: (em, E, row) => em.getRepository(E as typeof MkCovDoc).nativeDelete({ id: row.id }),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock qb.insert locked]',
    write: (em, E, row) => em.createQueryBuilder(E).insert({ section: row.section, title: 'qb' }).execute(),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock qb.update(where-pk) locked]',
    write: (em, E, row) => em.createQueryBuilder(E).update({ title: 'qb' }).where({ id: row.id }).execute(),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock qb.delete(where-pk) locked]',
    write: async (em, E, row) => em.createQueryBuilder(E).delete().where({ id: row.id }),
  },
];

/** Writes whose rows cannot be known before they run: refused with the documented LockConfigError. */
const REFUSED: Array<{ tag: string; write: Write }> = [
  {
    tag: '[coverage mikro-orm @AdvisoryLock em.nativeUpdate(criteria) refused]',
    write: (em, E, row) => em.nativeUpdate(E, { title: row.title }, { title: 'criteria' }),
  },
  { tag: '[coverage mikro-orm @AdvisoryLock em.nativeDelete(criteria) refused]', write: (em, E, row) => em.nativeDelete(E, { title: row.title }) },
  {
    tag: '[coverage mikro-orm @AdvisoryLock qb.update(where-criteria) refused]',
    write: (em, E, row) => em.createQueryBuilder(E).update({ title: 'x' }).where({ title: row.title }).execute(),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock qb.delete(where-criteria) refused]',
    write: (em, E, row) => em.createQueryBuilder(E).delete({ title: row.title }).execute(),
  },
  { tag: '[coverage mikro-orm @AdvisoryLock qb.truncate refused]', write: (em, E) => em.createQueryBuilder(E).truncate().execute() },
];

describeEachMikroBackend('coverage: entity @AdvisoryLock writes', [MkCovDoc, MkCovPlainDoc], (env) => {
  let section = 1000;
  const em = () => env.orm.em as unknown as EntityManager;

  async function newRow(E: Doc) {
    const seed = env.orm.em.fork();
    const row = seed.create(E, { section: ++section, title: `t${section}` });
    await seed.flush();
    return { id: row.id, section: row.section, title: row.title };
  }

  /** The order of "holder released" and "write done" when the write runs while the row's key is held (see orderAgainstHolder). */
  async function orderAgainstKey(E: Doc, write: Write, holdMs: number): Promise<string[]> {
    const row = await newRow(E);
    return orderAgainstHolder(
      (body) => withAdvisoryLock(keyOf(row.section), body, { dataSource: env.orm }),
      () => transaction(() => write(em(), E, row), { dataSource: env.orm }),
      holdMs,
    );
  }

  for (const row of LOCKED) {
    it(`${row.tag} waits for the holder of the row's key; the control without the declaration does not`, async () => {
      expect(await orderAgainstKey(MkCovPlainDoc, row.write, 5000), 'control').to.deep.equal(['write done', 'holder released']);
      expect(await orderAgainstKey(MkCovDoc, row.write, 400)).to.deep.equal(['holder released', 'write done']);
    });
  }

  for (const row of REFUSED) {
    it(`${row.tag} throws the documented LockConfigError (nothing written)`, async () => {
      const doc = await newRow(MkCovDoc);
      const error = await rejection(transaction(() => row.write(em(), MkCovDoc, doc), { dataSource: env.orm }));
      expect(error).to.be.instanceOf(LockConfigError);
      expect(error.message).to.contain('@AdvisoryLock on MkCovDoc: this').and.to.contain('has no entity to compute the lock key from');
      expect(await env.orm.em.fork().findOne(MkCovDoc, doc.id)).to.deep.include({ title: doc.title });
    });
  }

  it("an upsert of an existing row whose values leave out the key column takes the row's key", async () => {
    const partial: Write = (e, E, row) => e.upsert(E as typeof MkCovDoc, { id: row.id, title: 'partial' } as MkCovDoc);
    expect(await orderAgainstKey(MkCovPlainDoc, partial, 5000), 'control').to.deep.equal(['write done', 'holder released']);
    expect(await orderAgainstKey(MkCovDoc, partial, 400)).to.deep.equal(['holder released', 'write done']);
  });

  it('a native update by primary key outside a transaction is refused (TransactionRequiredError), as a flush outside one is', async () => {
    const doc = await newRow(MkCovDoc);
    const error = await rejection(env.orm.em.fork().nativeUpdate(MkCovDoc, { id: doc.id }, { title: 'z' }));
    expect(error.name).to.equal('TransactionRequiredError');
  });
});
