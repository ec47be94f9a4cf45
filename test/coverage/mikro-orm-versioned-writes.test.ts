import { Entity, OptionalProps, PrimaryKey, Property, Unique } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/knex';
import { expect } from 'chai';
import { createOrFind, LockConfigError, retryOnConflict, StaleEntityError, Versioned } from '../../src';
import { race } from '../../src/testing';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { rejection, sleep } from './support';

@Versioned()
@Entity({ tableName: 'cov_mk_vw_docs' })
class MkCovVwDoc {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Unique() @Property({ type: 'string', length: 40 }) slug!: string;
  @Property({ type: 'string', length: 40 }) title: string = '';
  @Property({ type: 'integer', version: true }) version!: number;
  [OptionalProps]?: 'title' | 'version';
}

/** The same shape, declared `uncheckedWrites: 'allow'`: every write below runs as MikroORM's own. */
@Versioned({ uncheckedWrites: 'allow' })
@Entity({ tableName: 'cov_mk_vw_allowed_docs' })
class MkCovVwAllowedDoc {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Unique() @Property({ type: 'string', length: 40 }) slug!: string;
  @Property({ type: 'string', length: 40 }) title: string = '';
  @Property({ type: 'integer', version: true }) version!: number;
  [OptionalProps]?: 'title' | 'version';
}

type E = typeof MkCovVwDoc;
type Write = (em: EntityManager, E: E, row: MkCovVwDoc) => Promise<unknown>;
let slugs = 0;

/** Unchecked writes: each is refused on MkCovVwDoc (naming `names`), and writes on MkCovVwAllowedDoc (`gone`: the row is deleted). */
const WRITES: Array<{ tag: string; names: string; write: Write; gone?: boolean }> = [
  {
    tag: '[coverage mikro-orm @Versioned em.nativeUpdate refused]',
    names: 'em.nativeUpdate()',
    write: (em, E, row) => em.nativeUpdate(E, { id: row.id }, { title: 'native' }),
  },
  {
    tag: '[coverage mikro-orm @Versioned em.nativeDelete refused]',
    names: 'em.nativeDelete()',
    gone: true,
    write: (em, E, row) => em.nativeDelete(E, { id: row.id }),
  },
  {
    tag: '[coverage mikro-orm @Versioned em.upsert refused]',
    names: 'em.upsert()',
    write: (em, E, row) => em.upsert(E, { id: row.id, slug: row.slug, title: 'upserted' }),
  },
  {
    tag: '[coverage mikro-orm @Versioned em.upsertMany refused]',
    names: 'em.upsertMany()',
    write: (em, E, row) => em.upsertMany(E, [{ id: row.id, slug: row.slug, title: 'upserted' }]),
  },
  {
    tag: '[coverage mikro-orm @Versioned repository.nativeUpdate refused]',
    names: 'em.nativeUpdate()',
    write: (em, E, row) => em.getRepository(E).nativeUpdate({ id: row.id }, { title: 'repo' }),
  },
  {
    tag: '[coverage mikro-orm @Versioned repository.nativeDelete refused]',
    names: 'em.nativeDelete()',
    gone: true,
    write: (em, E, row) => em.getRepository(E).nativeDelete({ id: row.id }),
  },
  {
    tag: '[coverage mikro-orm @Versioned repository.upsert refused]',
    names: 'em.upsert()',
    write: (em, E, row) => em.getRepository(E).upsert({ id: row.id, slug: row.slug, title: 'repo upsert' }),
  },
  {
    tag: '[coverage mikro-orm @Versioned qb.update refused]',
    names: 'qb.update()',
    write: (em, E, row) => em.createQueryBuilder(E).update({ title: 'qb' }).where({ id: row.id }).execute(),
  },
  {
    tag: '[coverage mikro-orm @Versioned qb.delete refused]',
    names: 'qb.delete()',
    gone: true,
    write: (em, E, row) => em.createQueryBuilder(E).delete().where({ id: row.id }).execute(),
  },
  {
    tag: '[coverage mikro-orm @Versioned qb.insert(onConflict.merge) refused]',
    names: 'qb.insert().onConflict().merge()',
    write: (em, E, row) => em.createQueryBuilder(E).insert({ id: row.id, slug: row.slug, title: 'qb upsert' }).onConflict('id').merge(['title']).execute(),
  },
];

const WRITE_SQL = /^\s*(insert|update|delete|truncate)\b/i;

describeEachMikroBackend('coverage: @Versioned writes that check no version (MikroORM)', [MkCovVwDoc, MkCovVwAllowedDoc], (env) => {
  const em = () => env.orm.em.fork() as unknown as EntityManager;

  async function seed(Entity: E | typeof MkCovVwAllowedDoc): Promise<MkCovVwDoc> {
    const fork = em();
    const row = fork.create(Entity as E, { slug: `s${process.pid}-${++slugs}` });
    await fork.flush();
    return row;
  }
  const rows = async (Entity: E | typeof MkCovVwAllowedDoc) => (await em().find(Entity as E, {}, { orderBy: { id: 'asc' } })).map((r) => ({ ...r }));

  for (const { tag, names, write } of WRITES) {
    it(`${tag} LockConfigError naming ${names} and uncheckedWrites, before any statement: no row changed`, async () => {
      const row = await seed(MkCovVwDoc);
      const before = await rows(MkCovVwDoc);
      const sentBefore = env.log.length;
      const error = await rejection(write(em(), MkCovVwDoc, row));
      const sent = env.log.slice(sentBefore);
      expect(error).to.be.instanceOf(LockConfigError);
      expect(error.message).to.include(`@Versioned MkCovVwDoc: ${names}`).and.include("uncheckedWrites: 'allow'");
      expect(error.details).to.include({ entity: 'MkCovVwDoc' });
      expect(sent.filter((q) => WRITE_SQL.test(q))).to.deep.equal([]);
      expect(await rows(MkCovVwDoc)).to.deep.equal(before);
    });
  }

  const BY_VERSION: Array<{ tag: string; write: Write; gone?: boolean }> = [
    {
      tag: '[coverage mikro-orm @Versioned em.nativeUpdate({pk,version}) checked]',
      write: (em, E, row) => em.nativeUpdate(E, { id: row.id, version: row.version }, { title: 'by version' }),
    },
    {
      tag: '[coverage mikro-orm @Versioned em.nativeDelete({pk,version}) checked]',
      gone: true,
      write: (em, E, row) => em.nativeDelete(E, { id: row.id, version: { $eq: row.version } }),
    },
  ];
  for (const { tag, write, gone } of BY_VERSION) {
    it(`${tag} naming the version the row has: it writes (an update moves the version); naming an older one: StaleEntityError, nothing written (allowed entity: 0 rows, no error)`, async () => {
      const fresh = await seed(MkCovVwDoc);
      expect(await write(em(), MkCovVwDoc, fresh)).to.equal(1);
      const written = await em().findOne(MkCovVwDoc, fresh.id);
      if (gone) expect(written).to.equal(null);
      else expect(written?.version).to.equal(fresh.version + 1);

      const stale = await seed(MkCovVwDoc);
      const other = em();
      (await other.findOneOrFail(MkCovVwDoc, stale.id)).title = 'other';
      await other.flush(); // a concurrent change: version + 1
      const before = await rows(MkCovVwDoc);
      const error = await rejection(write(em(), MkCovVwDoc, stale));
      expect(error).to.be.instanceOf(StaleEntityError);
      expect(error.message).to.include(`MkCovVwDoc {"id":${stale.id}} is stale`).and.include(`named version ${stale.version}`);
      expect(await rows(MkCovVwDoc)).to.deep.equal(before);

      const allowed = await seed(MkCovVwAllowedDoc);
      const fork = em();
      (await fork.findOneOrFail(MkCovVwAllowedDoc, allowed.id)).title = 'other';
      await fork.flush();
      expect(await write(em(), MkCovVwAllowedDoc as unknown as E, allowed), 'control').to.equal(0);
    });
  }

  it('[coverage mikro-orm @Versioned em.nativeUpdate({pk,version}) checked] 8 concurrent read-then-nativeUpdate({ id, version }) increments under retryOnConflict are exact; the control (allowed entity) loses some silently', async () => {
    const N = 8;
    const increments = async (Entity: E | typeof MkCovVwAllowedDoc) => {
      const { id } = await seed(Entity);
      const results = await race(N, () =>
        retryOnConflict(
          async () => {
            const row = await em().findOneOrFail(Entity as E, id);
            await sleep(30);
            await em().nativeUpdate(Entity as E, { id, version: row.version }, { title: String(Number(row.title || 0) + 1) });
          },
          { attempts: 50, backoffMs: 5 },
        ),
      );
      expect(results.filter((x) => x.status === 'rejected').map((x) => String((x as PromiseRejectedResult).reason))).to.deep.equal([]);
      return Number((await em().findOneOrFail(Entity as E, id)).title);
    };
    expect(await increments(MkCovVwAllowedDoc), 'control').to.be.lessThan(N);
    expect(await increments(MkCovVwDoc)).to.equal(N);
  });

  it('[coverage mikro-orm @Versioned qb.truncate refused] LockConfigError naming qb.truncate(); no row deleted', async () => {
    await seed(MkCovVwDoc);
    const before = await rows(MkCovVwDoc);
    const error = await rejection(em().createQueryBuilder(MkCovVwDoc).truncate().execute());
    expect(error).to.be.instanceOf(LockConfigError);
    expect(error.message).to.include('@Versioned MkCovVwDoc: qb.truncate()');
    expect(await rows(MkCovVwDoc)).to.deep.equal(before);
  });

  it('[coverage mikro-orm @Versioned em.execute cannot-be-seen] a raw statement writes, unchecked', async () => {
    const row = await seed(MkCovVwDoc);
    await em().execute(`UPDATE cov_mk_vw_docs SET title = 'raw' WHERE id = ${Number(row.id)}`);
    expect((await em().findOneOrFail(MkCovVwDoc, row.id)).title).to.equal('raw');
  });

  it("uncheckedWrites: 'allow': each of those writes runs as MikroORM's own (the row changes, no error)", async () => {
    for (const { tag, write, gone } of WRITES) {
      const row = await seed(MkCovVwAllowedDoc);
      const before = await em().findOneOrFail(MkCovVwAllowedDoc, row.id);
      await write(em(), MkCovVwAllowedDoc as unknown as E, row).catch((e) => expect.fail(`${tag}: ${e}`));
      const after = await em().findOne(MkCovVwAllowedDoc, row.id);
      if (gone) expect(after, tag).to.equal(null);
      else expect(after?.title, tag).to.not.equal(before.title);
    }
  });

  it('a flush still writes, checked (a stale update is StaleEntityError); em.insert and createOrFind still insert', async () => {
    const row = await seed(MkCovVwDoc);
    const mine = em();
    const loaded = await mine.findOneOrFail(MkCovVwDoc, row.id);
    const other = em();
    (await other.findOneOrFail(MkCovVwDoc, row.id)).title = 'other';
    await other.flush();
    loaded.title = 'mine';
    expect(await rejection(mine.flush())).to.be.instanceOf(StaleEntityError);
    const fresh = em();
    fresh.remove(await fresh.findOneOrFail(MkCovVwDoc, row.id));
    await fresh.flush();
    expect(await em().findOne(MkCovVwDoc, row.id)).to.equal(null);

    await em().insert(MkCovVwDoc, { slug: `ins${process.pid}-${++slugs}` });
    const slug = `cof${process.pid}-${++slugs}`;
    const created = await createOrFind(em().getRepository(MkCovVwDoc), { slug });
    const found = await createOrFind(em().getRepository(MkCovVwDoc), { slug });
    expect(found.id).to.equal(created.id);
  });
});
