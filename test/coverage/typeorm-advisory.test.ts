import { expect } from 'chai';
import { Column, DeleteDateColumn, Entity, PrimaryGeneratedColumn, type Repository } from 'typeorm';
import { AdvisoryLock, LockConfigError, transaction, withAdvisoryLock } from '../../src';
import { describeEachBackend } from '../support/suite';
import { orderAgainstHolder, rejection, repositoryHas } from './support';

/** Keys come from a column that is neither in an update's WHERE nor in its SET: only the row knows it. */
@AdvisoryLock((d: CovDoc) => `section:${process.pid}:${d.section}`)
@Entity('cov_adv_docs')
class CovDoc {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int', default: 0 }) section!: number;
  @Column({ type: 'varchar', length: 40, default: '' }) title!: string;
  @Column({ type: 'int', default: 0 }) hits!: number;
  @DeleteDateColumn({ nullable: true }) deletedAt?: Date | null;
}

/** An array key: its refusal is the documented one, never a key validation error. */
@AdvisoryLock((d: CovPairDoc) => ['pair', process.pid, d.section])
@Entity('cov_adv_pairs')
class CovPairDoc {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) section!: number;
  @Column({ type: 'varchar', length: 40, default: '' }) title!: string;
}

/** The control: the same table without the declaration. */
@Entity('cov_adv_plain_docs')
class CovPlainDoc {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int', default: 0 }) section!: number;
  @Column({ type: 'varchar', length: 40, default: '' }) title!: string;
  @Column({ type: 'int', default: 0 }) hits!: number;
  @DeleteDateColumn({ nullable: true }) deletedAt?: Date | null;
}

type Doc = CovDoc | CovPlainDoc;
type Write = (repo: Repository<Doc>, row: Doc) => Promise<unknown>;

/** Writes that take the row's key: each must wait for the holder of `section:<pid>:<n>`. */
const LOCKED: Array<{ tag: string; method?: string; write: Write }> = [
  { tag: '[coverage typeorm @AdvisoryLock repository.save(insert) locked]', write: (r, row) => r.save(r.create({ section: row.section, title: 'new' })) },
  {
    tag: '[coverage typeorm @AdvisoryLock repository.save(update) locked]',
    write: async (r, row) => r.save(Object.assign(await r.findOneByOrFail({ id: row.id }), { title: 'saved' })),
  },
  { tag: '[coverage typeorm @AdvisoryLock repository.remove locked]', write: async (r, row) => r.remove(await r.findOneByOrFail({ id: row.id })) },
  { tag: '[coverage typeorm @AdvisoryLock repository.softRemove locked]', write: async (r, row) => r.softRemove(await r.findOneByOrFail({ id: row.id })) },
  {
    tag: '[coverage typeorm @AdvisoryLock repository.recover locked]',
    write: async (r, row) => {
      const found = await r.findOneByOrFail({ id: row.id });
      await r.manager.getRepository(r.target).createQueryBuilder().softDelete().whereInIds([row.id]).callListeners(false).execute();
      return r.recover(found);
    },
  },
  { tag: '[coverage typeorm @AdvisoryLock repository.insert locked]', write: (r, row) => r.insert({ section: row.section, title: 'inserted' }) },
  {
    tag: '[coverage typeorm @AdvisoryLock repository.upsert locked]',
    write: (r, row) => r.upsert({ id: row.id, section: row.section, title: 'upserted' }, ['id']),
  },
  { tag: '[coverage typeorm @AdvisoryLock repository.update(id) locked]', write: (r, row) => r.update(row.id, { title: 'by id' }) },
  { tag: '[coverage typeorm @AdvisoryLock repository.update({pk}) locked]', write: (r, row) => r.update({ id: row.id }, { title: 'by pk' }) },
  { tag: '[coverage typeorm @AdvisoryLock repository.increment locked]', write: (r, row) => r.increment({ id: row.id }, 'hits', 1) },
  { tag: '[coverage typeorm @AdvisoryLock repository.decrement locked]', write: (r, row) => r.decrement({ id: row.id }, 'hits', 1) },
  {
    tag: '[coverage typeorm @AdvisoryLock qb.update(where-pk-string) locked]',
    write: (r, row) => r.createQueryBuilder().update().set({ title: 'qb' }).where('id = :id', { id: row.id }).execute(),
  },
  {
    tag: '[coverage typeorm @AdvisoryLock qb.update(where-pk-object) locked]',
    write: (r, row) => r.createQueryBuilder().update().set({ title: 'qb' }).where({ id: row.id }).execute(),
  },
  { tag: '[coverage typeorm @AdvisoryLock repository.delete(id) locked]', write: (r, row) => r.delete(row.id) },
  { tag: '[coverage typeorm @AdvisoryLock repository.delete({pk}) locked]', write: (r, row) => r.delete({ id: row.id }) },
  {
    tag: '[coverage typeorm @AdvisoryLock qb.delete(where-pk) locked]',
    write: (r, row) => r.createQueryBuilder().delete().where('id = :id', { id: row.id }).execute(),
  },
  {
    tag: '[coverage typeorm @AdvisoryLock qb.insert locked]',
    write: (r, row) => r.createQueryBuilder().insert().values({ section: row.section, title: 'qb' }).execute(),
  },
];

/** Writes whose rows cannot be known before they run: refused with the documented LockConfigError. */
const REFUSED: Array<{ tag: string; method?: string; write: Write }> = [
  { tag: '[coverage typeorm @AdvisoryLock repository.update(criteria) refused]', write: (r, row) => r.update({ title: row.title }, { title: 'criteria' }) },
  {
    tag: '[coverage typeorm @AdvisoryLock qb.update(where-criteria) refused]',
    write: (r, row) => r.createQueryBuilder().update().set({ title: 'x' }).where('title = :t', { t: row.title }).execute(),
  },
  { tag: '[coverage typeorm @AdvisoryLock repository.delete(criteria) refused]', write: (r, row) => r.delete({ title: row.title }) },
  {
    tag: '[coverage typeorm @AdvisoryLock qb.delete(where-criteria) refused]',
    write: (r, row) => r.createQueryBuilder().delete().where('title = :t', { t: row.title }).execute(),
  },
  { tag: '[coverage typeorm @AdvisoryLock repository.softDelete refused]', write: (r, row) => r.softDelete(row.id) },
  { tag: '[coverage typeorm @AdvisoryLock repository.restore refused]', write: (r, row) => r.restore(row.id) },
  { tag: '[coverage typeorm@>=0.3.31 @AdvisoryLock repository.updateAll refused]', method: 'updateAll', write: (r) => (r as any).updateAll({ title: 'all' }) },
  { tag: '[coverage typeorm@>=0.3.31 @AdvisoryLock repository.deleteAll refused]', method: 'deleteAll', write: (r) => (r as any).deleteAll() },
];

describeEachBackend('coverage: entity @AdvisoryLock writes', [CovDoc, CovPairDoc, CovPlainDoc], (env) => {
  let section = 1000;

  /** The order of "holder released" and "write done" when the write runs while `section:<pid>:<n>` is held (see orderAgainstHolder). */
  async function orderAgainstKey(entity: typeof CovDoc | typeof CovPlainDoc, write: Write, holdMs: number): Promise<string[]> {
    const repo = env.ds.getRepository<Doc>(entity);
    const row = await repo.save(repo.create({ section: ++section, title: `t${section}` }));
    return orderAgainstHolder(
      (body) => withAdvisoryLock(`section:${process.pid}:${row.section}`, body),
      () => transaction(() => write(repo, row)),
      holdMs,
    );
  }

  for (const row of LOCKED) {
    if (row.method && !repositoryHas(row.method)) continue;
    it(`${row.tag} waits for the holder of the row's key; the control without the declaration does not`, async () => {
      expect(await orderAgainstKey(CovPlainDoc, row.write, 5000), 'control').to.deep.equal(['write done', 'holder released']);
      expect(await orderAgainstKey(CovDoc, row.write, 400)).to.deep.equal(['holder released', 'write done']);
    });
  }

  for (const row of REFUSED) {
    if (row.method && !repositoryHas(row.method)) continue;
    it(`${row.tag} throws the documented LockConfigError (nothing written)`, async () => {
      const repo = env.ds.getRepository<Doc>(CovDoc);
      const doc = await repo.save(repo.create({ section: ++section, title: `r${section}` }));
      const error = await rejection(transaction(() => row.write(repo, doc)));
      expect(error).to.be.instanceOf(LockConfigError);
      expect(error.message).to.contain('@AdvisoryLock on CovDoc: this').and.to.contain('has no entity to compute the lock key from');
      if (row.tag.includes('criteria')) expect(error.message, 'says why').to.contain('its WHERE does not name the rows by primary key');
      expect(await repo.findOne({ where: { id: doc.id }, withDeleted: true })).to.deep.include({ title: doc.title, deletedAt: null });
    });
  }

  it('[coverage typeorm @AdvisoryLock repository.update(criteria,array-key) refused] an array key on a criteria update gives the documented refusal, not a key validation error; by primary key it locks', async () => {
    const repo = env.ds.getRepository(CovPairDoc);
    const doc = await repo.save(repo.create({ section: 7, title: 'pair' }));
    const error = await rejection(transaction(() => repo.update({ title: 'pair' }, { title: 'x' })));
    expect(error).to.be.instanceOf(LockConfigError);
    expect(error.message).to.contain('has no entity to compute the lock key from').and.not.to.contain('undefined');
    await transaction(() => repo.update(doc.id, { title: 'y' }));
    expect((await repo.findOneByOrFail({ id: doc.id })).title).to.equal('y');
  });

  it("an upsert of an existing row whose values leave out the key column takes the row's key", async () => {
    const partial: Write = (r, row) => r.upsert({ id: row.id, title: 'partial' }, ['id']);
    expect(await orderAgainstKey(CovPlainDoc, partial, 5000), 'control').to.deep.equal(['write done', 'holder released']);
    expect(await orderAgainstKey(CovDoc, partial, 400)).to.deep.equal(['holder released', 'write done']);
  });

  it('an update by primary key outside a transaction is refused (TransactionRequiredError), as for a query builder without useTransaction', async () => {
    const repo = env.ds.getRepository(CovDoc);
    const doc = await repo.save(repo.create({ section: ++section, title: 'out' }));
    const error = await rejection(repo.update(doc.id, { title: 'z' }));
    expect(error.name).to.equal('TransactionRequiredError');
  });
});
