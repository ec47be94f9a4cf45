import { expect } from 'chai';
import { Column, Entity, ManyToOne, PrimaryGeneratedColumn, type EntityManager, type Repository } from 'typeorm';
import { AroundCreate, LockConfigError, lockParent, transaction, type AroundCreateContext } from '../../src';
import { LockedCt, LockedMp, LockedNs } from '../fixtures/trees';
import { describeEachBackend } from '../support/suite';
import { raceIncrements, rejection, sleep } from './support';

/**
 * The next position among a folder's items, read and then written after a window: concurrent
 * creations in one folder get the same position unless something serializes them.
 */
const nextPosition =
  (table: string) =>
  async (item: { folderId?: number; position?: number }, { manager }: AroundCreateContext) => {
    const raw = await (manager as EntityManager)
      .createQueryBuilder()
      .select('MAX(i.position)', 'm')
      .from(table, 'i')
      .where('i.folderId = :f', { f: item.folderId })
      .getRawOne();
    await sleep(30);
    item.position = Number(raw?.m ?? 0) + 1;
  };

@Entity('cov_ac_folders')
class CovFolder {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, default: '' }) name!: string;
}

@AroundCreate(lockParent('folder'), nextPosition('cov_ac_items'))
@Entity('cov_ac_items')
class CovItem {
  @PrimaryGeneratedColumn() id!: number;
  @ManyToOne(() => CovFolder, { nullable: false }) folder!: CovFolder;
  @Column() folderId!: number;
  @Column({ type: 'int', default: 0 }) position!: number;
  @Column({ type: 'varchar', length: 40, default: '' }) title!: string;
}

/** The control: the same hook computing the position, no parent lock. */
@AroundCreate(nextPosition('cov_ac_plain_items'))
@Entity('cov_ac_plain_items')
class CovPlainItem {
  @PrimaryGeneratedColumn() id!: number;
  @ManyToOne(() => CovFolder, { nullable: false }) folder!: CovFolder;
  @Column() folderId!: number;
  @Column({ type: 'int', default: 0 }) position!: number;
  @Column({ type: 'varchar', length: 40, default: '' }) title!: string;
}

type Item = typeof CovItem | typeof CovPlainItem;
type Insert = (repo: Repository<CovItem | CovPlainItem>, folderId: number, n: number) => Promise<unknown>;

let upsertId = 100_000;
/** Inserts that bypass save(): each runs the hooks, so the parent is locked first. */
const LOCKED: Array<{ tag: string; insert: Insert }> = [
  {
    tag: '[coverage typeorm @AroundCreate qb.insert locked]',
    insert: (r, folderId, n) =>
      r
        .createQueryBuilder()
        .insert()
        .values({ folderId, title: `qb${n}` })
        .execute(),
  },
  {
    tag: '[coverage typeorm @AroundCreate repository.upsert locked]',
    insert: (r, folderId, n) => r.upsert({ id: ++upsertId, folderId, title: `up${n}` }, ['id']),
  },
];

const TREES = [LockedNs, LockedMp, LockedCt];
type TreeRepo = Repository<LockedNs | LockedMp | LockedCt>;
/** Inserts of a @LockedTree entity that bypass TypeORM's tree bookkeeping: refused. */
const TREE_REFUSED: Array<{ tag: string; call: string; insert: (repo: TreeRepo) => Promise<unknown> }> = [
  { tag: '[coverage typeorm @LockedTree repository.insert refused]', call: 'insert()', insert: (r) => r.insert({ name: 'ins' }) },
  {
    tag: '[coverage typeorm @LockedTree qb.insert refused]',
    call: 'insert()',
    insert: (r) => r.createQueryBuilder().insert().values({ name: 'qb' }).execute(),
  },
  { tag: '[coverage typeorm @LockedTree repository.upsert refused]', call: 'upsert()', insert: (r) => r.upsert({ id: 900_001, name: 'up' }, ['id']) },
];

describeEachBackend('coverage: @AroundCreate and @LockedTree on inserts beside save()', [CovFolder, CovItem, CovPlainItem, ...TREES], (env) => {
  const N = 6;

  /** N creations in one new folder, started on a barrier, each in its own transaction; returns the positions they got. */
  async function positions(entity: Item, insert: Insert): Promise<number[]> {
    const folder = await env.ds.getRepository(CovFolder).save({ name: 'f' });
    const repo = env.ds.getRepository<CovItem | CovPlainItem>(entity);
    let n = 0;
    const failures = await raceIncrements(
      N,
      (body) => transaction(body),
      () => insert(repo, folder.id, n++).then(() => undefined),
    );
    expect(failures).to.deep.equal([]);
    return (await repo.find({ where: { folderId: folder.id }, order: { position: 'ASC' } })).map((i) => i.position);
  }

  for (const row of LOCKED) {
    it(`${row.tag} ${N} concurrent creations under one parent get distinct positions; the control without the parent lock repeats some`, async () => {
      const control = await positions(CovPlainItem, row.insert);
      expect(new Set(control).size, `control ${control.join(',')}`).to.be.lessThan(N);
      expect(await positions(CovItem, row.insert)).to.deep.equal(Array.from({ length: N }, (_, i) => i + 1));
    });
  }

  for (const row of TREE_REFUSED) {
    it(`${row.tag} throws LockConfigError naming the entity and save() (every tree kind), nothing inserted`, async () => {
      for (const tree of TREES) {
        const repo = env.ds.getRepository<LockedNs | LockedMp | LockedCt>(tree);
        const before = await repo.count();
        const error = await rejection(transaction(() => row.insert(repo)));
        expect(error).to.be.instanceOf(LockConfigError);
        expect(error.message).to.contain(`@LockedTree on ${tree.name}: ${row.call}`).and.to.contain('save()');
        expect(await repo.count()).to.equal(before);
      }
    });
  }
});
