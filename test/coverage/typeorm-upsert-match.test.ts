/**
 * TypeORM upserts of an entity with `@AdvisoryLock(entity => key)` that match the existing row on
 * a unique column (`upsert(values, ['slug'])`, `insert().orUpdate(columns, ['slug'])`) and leave
 * the key column out of their values: the key is the updated row's, so the write waits for the
 * holder of that row's key. The control without the declaration does not wait; a conflict column
 * of a relation is refused by name.
 */
import { expect } from 'chai';
import { Column, Entity, ManyToOne, PrimaryGeneratedColumn, type Repository } from 'typeorm';
import { AdvisoryLock, LockConfigError, transaction, withAdvisoryLock } from '../../src';
import { describeEachBackend } from '../support/suite';
import { orderAgainstHolder, rejection } from './support';

const keyOf = (section: number) => `up:${process.pid}:section:${section}`;

@AdvisoryLock((d: UpDoc) => keyOf(d.section))
@Entity('cov_up_docs')
class UpDoc {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) slug!: string;
  @Column({ type: 'int', default: 0 }) section!: number;
  @Column({ type: 'varchar', length: 40, default: '' }) title!: string;
}

/** The control: the same table without the declaration. */
@Entity('cov_up_plain_docs')
class UpPlainDoc {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) slug!: string;
  @Column({ type: 'int', default: 0 }) section!: number;
  @Column({ type: 'varchar', length: 40, default: '' }) title!: string;
}

@Entity('cov_up_groups')
class UpGroup {
  @PrimaryGeneratedColumn() id!: number;
}

/** Unique per group (a relation column): a match ormlock cannot read back by plain values. */
@AdvisoryLock((d: UpByGroup) => keyOf(d.section))
@Entity('cov_up_by_group')
class UpByGroup {
  @PrimaryGeneratedColumn() id!: number;
  @ManyToOne(() => UpGroup) group!: UpGroup;
  @Column({ type: 'int', unique: true }) groupId!: number;
  @Column({ type: 'int', default: 0 }) section!: number;
  @Column({ type: 'varchar', length: 40, default: '' }) title!: string;
}

type Doc = UpDoc | UpPlainDoc;
type Write = (repo: Repository<Doc>, slug: string) => Promise<unknown>;

const WRITES: Array<{ tag: string; write: Write }> = [
  { tag: '[coverage typeorm @AdvisoryLock repository.upsert(conflict-unique-column) locked]', write: (r, slug) => r.upsert({ slug, title: 'up' }, ['slug']) },
  {
    tag: '[coverage typeorm @AdvisoryLock qb.insert().orUpdate(conflict-unique-column) locked]',
    write: (r, slug) => r.createQueryBuilder().insert().values({ slug, title: 'up' }).orUpdate(['title'], ['slug']).execute(),
  },
];

describeEachBackend('coverage: entity @AdvisoryLock upserts matched on a unique column', [UpDoc, UpPlainDoc, UpGroup, UpByGroup], (env) => {
  let n = 0;

  async function orderAgainstKey(entity: typeof UpDoc | typeof UpPlainDoc, write: Write, holdMs: number): Promise<string[]> {
    const repo = env.ds.getRepository<Doc>(entity);
    const section = 7000 + ++n;
    const slug = `s${process.pid}-${n}`;
    await repo.save(repo.create({ slug, section, title: 'seed' }));
    return orderAgainstHolder(
      (body) => withAdvisoryLock(keyOf(section), body),
      () => transaction(() => write(repo, slug)),
      holdMs,
    );
  }

  for (const row of WRITES) {
    it(`${row.tag} waits for the holder of the matched row's key; the control without the declaration does not`, async () => {
      expect(await orderAgainstKey(UpPlainDoc, row.write, 5000), 'control').to.deep.equal(['write done', 'holder released']);
      expect(await orderAgainstKey(UpDoc, row.write, 400)).to.deep.equal(['holder released', 'write done']);
    });
  }

  it('[coverage typeorm @AdvisoryLock repository.upsert(conflict-relation-column) refused] an upsert matched on a relation column is refused by name (nothing written)', async () => {
    const group = await env.ds.getRepository(UpGroup).save({});
    const docs = env.ds.getRepository(UpByGroup);
    await docs.save({ group, groupId: group.id, section: 1, title: 'seed' });
    const error = await rejection(transaction(() => docs.upsert({ group: { id: group.id }, title: 'up' }, ['group'])));
    expect(error).to.be.instanceOf(LockConfigError);
    expect(error.message).to.contain('@AdvisoryLock on UpByGroup: this upsert').and.to.contain('a column of a relation');
    expect((await docs.findOneByOrFail({ groupId: group.id })).title).to.equal('seed');
  });
});
