import { Entity, ManyToOne, OptionalProps, PrimaryKey, Property, type EntityManager as CoreEntityManager } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/knex';
import { expect } from 'chai';
import { AroundCreate, lockParent, transaction, type AroundCreateContext } from '../../src';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { raceIncrements, sleep } from './support';

/**
 * The next position among a folder's items, read and then written after a window: concurrent
 * creations in one folder get the same position unless something serializes them.
 */
const nextPosition =
  (table: string) =>
  async (item: { folder?: number | { id: number }; position?: number }, { manager }: AroundCreateContext) => {
    const em = manager as unknown as CoreEntityManager;
    const folder = typeof item.folder === 'object' ? item.folder.id : item.folder;
    const row = await em.getConnection().execute(`select max(position) as m from ${table} where folder_id = ?`, [folder], 'get', em.getTransactionContext());
    await sleep(30);
    item.position = Number(row?.m ?? 0) + 1;
  };

@Entity({ tableName: 'cov_mk_ac_folders' })
class MkCovFolder {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 40 }) name: string = '';
}

@AroundCreate(lockParent('folder'), nextPosition('cov_mk_ac_items'))
@Entity({ tableName: 'cov_mk_ac_items' })
class MkCovItem {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @ManyToOne(() => MkCovFolder) folder!: MkCovFolder;
  @Property({ type: 'integer' }) position: number = 0;
  @Property({ type: 'string', length: 40 }) title: string = '';
  [OptionalProps]?: 'position' | 'title';
}

/** The control: the same hook computing the position, no parent lock. */
@AroundCreate(nextPosition('cov_mk_ac_plain_items'))
@Entity({ tableName: 'cov_mk_ac_plain_items' })
class MkCovPlainItem {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @ManyToOne(() => MkCovFolder) folder!: MkCovFolder;
  @Property({ type: 'integer' }) position: number = 0;
  @Property({ type: 'string', length: 40 }) title: string = '';
  [OptionalProps]?: 'position' | 'title';
}

type Item = typeof MkCovItem | typeof MkCovPlainItem;
type Insert = (em: EntityManager, E: Item, folder: number, n: number) => Promise<unknown>;

let upsertId = 100_000;
/** Inserts (beside a flush and through it): each runs the hooks, so the parent is locked first. */
const LOCKED: Array<{ tag: string; insert: Insert }> = [
  {
    tag: '[coverage mikro-orm @AroundCreate em.persist+flush locked]',
    insert: (em, E, folder, n) => em.persist(em.create(E as typeof MkCovItem, { folder, title: `p${n}` })).flush(),
  },
  { tag: '[coverage mikro-orm @AroundCreate em.insert locked]', insert: (em, E, folder, n) => em.insert(E as typeof MkCovItem, { folder, title: `i${n}` }) },
  {
    tag: '[coverage mikro-orm @AroundCreate em.insert(entity) locked]',
    insert: (em, E, folder, n) =>
      em.insert(em.create(E as typeof MkCovItem, { folder: em.getReference(MkCovFolder, folder), title: `e${n}` }, { persist: false })),
  },
  {
    tag: '[coverage mikro-orm @AroundCreate em.insertMany locked]',
    insert: (em, E, folder, n) => em.insertMany(E as typeof MkCovItem, [{ folder, title: `m${n}` }]),
  },
  {
    tag: '[coverage mikro-orm @AroundCreate em.upsert locked]',
    insert: (em, E, folder, n) => em.upsert(E as typeof MkCovItem, { id: ++upsertId, folder, title: `u${n}` }),
  },
  {
    tag: '[coverage mikro-orm @AroundCreate em.upsertMany locked]',
    insert: (em, E, folder, n) => em.upsertMany(E as typeof MkCovItem, [{ id: ++upsertId, folder, title: `v${n}` }]),
  },
  {
    tag: '[coverage mikro-orm @AroundCreate qb.insert locked]',
    insert: (em, E, folder, n) =>
      em
        .createQueryBuilder(E as typeof MkCovItem)
        .insert({ folder, title: `q${n}` })
        .execute(),
  },
];

describeEachMikroBackend('coverage: @AroundCreate on inserts', [MkCovFolder, MkCovItem, MkCovPlainItem], (env) => {
  const N = 6;

  /** N creations in one new folder, started on a barrier, each in its own transaction; returns the positions they got. */
  async function positions(E: Item, insert: Insert): Promise<number[]> {
    const seed = env.orm.em.fork();
    const folder = seed.create(MkCovFolder, { name: 'f' });
    await seed.flush();
    let n = 0;
    const failures = await raceIncrements(
      N,
      (body) => transaction(body, { dataSource: env.orm }),
      () => insert(env.orm.em as unknown as EntityManager, E, folder.id, n++).then(() => undefined),
    );
    expect(failures).to.deep.equal([]);
    return (await env.orm.em.fork().find(E as typeof MkCovItem, { folder: folder.id }, { orderBy: { position: 'asc' } })).map((i) => i.position);
  }

  for (const row of LOCKED) {
    it(`${row.tag} ${N} concurrent creations under one parent get distinct positions; the control without the parent lock repeats some`, async () => {
      const control = await positions(MkCovPlainItem, row.insert);
      expect(new Set(control).size, `control ${control.join(',')}`).to.be.lessThan(N);
      expect(await positions(MkCovItem, row.insert)).to.deep.equal(Array.from({ length: N }, (_, i) => i + 1));
    });
  }

  it('an insert beside a flush outside a transaction is refused (TransactionRequiredError), nothing inserted', async () => {
    const seed = env.orm.em.fork();
    const folder = seed.create(MkCovFolder, { name: 'out' });
    await seed.flush();
    const error = await env.orm.em
      .fork()
      .insert(MkCovItem, { folder: folder.id, title: 'out' })
      .then(
        () => null,
        (e: Error) => e,
      );
    expect(error?.name).to.equal('TransactionRequiredError');
    expect(await env.orm.em.fork().count(MkCovItem, { folder: folder.id })).to.equal(0);
  });
});
