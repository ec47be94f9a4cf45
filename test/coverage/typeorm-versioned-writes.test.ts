import { expect } from 'chai';
import {
  Column,
  DeleteDateColumn,
  Entity,
  EventSubscriber,
  JoinTable,
  ManyToMany,
  ManyToOne,
  OneToMany,
  PrimaryGeneratedColumn,
  Tree,
  TreeChildren,
  TreeParent,
  VersionColumn,
  type EntitySubscriberInterface,
  type Repository,
  type UpdateEvent,
} from 'typeorm';
import { createOrFind, LockConfigError, retryOnConflict, StaleEntityError, versioned, Versioned } from '../../src';
import { race } from '../../src/testing';
import { describeEachBackend } from '../support/suite';
import { rejection, repositoryHas, sleep } from './support';

@Entity('cov_vw_tags')
class CovVwTag {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) name!: string;
}

@Entity('cov_vw_owners')
class CovVwOwner {
  @PrimaryGeneratedColumn() id!: number;
  @OneToMany(() => CovVwDoc, (d) => d.owner) docs!: CovVwDoc[];
}

/** The columns of the three document tables below (each its own table). */
abstract class CovVwColumns {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40, unique: true }) slug!: string;
  @Column({ type: 'varchar', length: 40, default: '' }) title!: string;
  @Column({ type: 'int', default: 0 }) hits!: number;
  @DeleteDateColumn({ nullable: true }) deletedAt?: Date | null;
  @VersionColumn() version!: number;
}

@Versioned()
@Entity('cov_vw_docs')
class CovVwDoc extends CovVwColumns {
  @ManyToMany(() => CovVwTag) @JoinTable({ name: 'cov_vw_doc_tags' }) tags!: CovVwTag[];
  @ManyToOne(() => CovVwOwner, (o) => o.docs, { nullable: true }) owner?: CovVwOwner | null;
}

/** The same table shape, declared `uncheckedWrites: 'allow'`: every write below runs as TypeORM's own. */
@Versioned({ uncheckedWrites: 'allow' })
@Entity('cov_vw_allowed_docs')
class CovVwAllowedDoc extends CovVwColumns {}

/** The control of softRemove()/recover(): TypeORM's own @VersionColumn, no @Versioned. */
@Entity('cov_vw_plain_docs')
class CovVwPlainDoc extends CovVwColumns {}

/** A versioned materialized-path tree: TypeORM's tree executor updates the path with a builder of its own. */
@Versioned()
@Tree('materialized-path')
@Entity('cov_vw_folders')
class CovVwFolder {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 40 }) name!: string;
  @VersionColumn() version!: number;
  @TreeParent() parent?: CovVwFolder | null;
  @TreeChildren() children!: CovVwFolder[];
}

/** A subscriber that writes beside the save it observes: its own update() of a versioned row is the user's, refused. */
@EventSubscriber()
class CovVwPoke implements EntitySubscriberInterface<CovVwDoc> {
  listenTo() {
    return CovVwDoc;
  }
  async beforeUpdate(event: UpdateEvent<CovVwDoc>) {
    if (event.entity?.title === 'poke') await event.manager.update(CovVwDoc, { id: event.entity.id }, { hits: 100 });
  }
}

type Doc = CovVwDoc | CovVwAllowedDoc | CovVwPlainDoc;
type DocClass = typeof CovVwDoc | typeof CovVwAllowedDoc | typeof CovVwPlainDoc;
type Write = (repo: Repository<Doc>, row: Doc) => Promise<unknown>;
let slugs = 0;

/** Unchecked writes: each is refused on CovVwDoc (naming `names`), and writes on CovVwAllowedDoc. */
const WRITES: Array<{ tag: string; names: string; method?: string; write: Write; softDeleted?: boolean }> = [
  { tag: '[coverage typeorm @Versioned repository.update refused]', names: 'update()', write: (r, row) => r.update({ id: row.id }, { title: 'updated' }) },
  {
    tag: '[coverage typeorm @Versioned manager.update refused]',
    names: 'update()',
    write: (r, row) => r.manager.update(r.target, row.id, { title: 'updated' }),
  },
  {
    tag: '[coverage typeorm@>=0.3.31 @Versioned repository.updateAll refused]',
    names: 'update()',
    method: 'updateAll',
    write: (r) => (r as any).updateAll({ title: 'all' }),
  },
  { tag: '[coverage typeorm @Versioned repository.increment refused]', names: 'update()', write: (r, row) => r.increment({ id: row.id }, 'hits', 1) },
  { tag: '[coverage typeorm @Versioned repository.decrement refused]', names: 'update()', write: (r, row) => r.decrement({ id: row.id }, 'hits', 1) },
  { tag: '[coverage typeorm @Versioned repository.delete refused]', names: 'delete()', write: (r, row) => r.delete(row.id) },
  { tag: '[coverage typeorm @Versioned manager.delete refused]', names: 'delete()', write: (r, row) => r.manager.delete(r.target, { id: row.id }) },
  { tag: '[coverage typeorm@>=0.3.31 @Versioned repository.deleteAll refused]', names: 'delete()', method: 'deleteAll', write: (r) => (r as any).deleteAll() },
  {
    tag: '[coverage typeorm @Versioned repository.upsert refused]',
    names: 'upsert()',
    write: (r, row) => r.upsert({ slug: row.slug, title: 'upserted' }, ['slug']),
  },
  { tag: '[coverage typeorm @Versioned repository.clear refused]', names: 'clear()', method: 'clear', write: (r) => r.clear() },
  { tag: '[coverage typeorm @Versioned repository.softDelete refused]', names: 'softDelete()', write: (r, row) => r.softDelete(row.id) },
  { tag: '[coverage typeorm @Versioned repository.restore refused]', names: 'restore()', softDeleted: true, write: (r, row) => r.restore(row.id) },
  {
    tag: '[coverage typeorm @Versioned qb.update refused]',
    names: 'update()',
    write: (r, row) => r.createQueryBuilder().update().set({ title: 'qb' }).where('id = :id', { id: row.id }).execute(),
  },
  {
    tag: '[coverage typeorm @Versioned qb.update(callListeners-false) refused]',
    names: 'update()',
    write: (r, row) => r.createQueryBuilder().update().set({ title: 'qb' }).where('id = :id', { id: row.id }).callListeners(false).execute(),
  },
  {
    tag: '[coverage typeorm @Versioned qb.delete refused]',
    names: 'delete()',
    write: (r, row) => r.createQueryBuilder().delete().where('id = :id', { id: row.id }).execute(),
  },
  {
    tag: '[coverage typeorm @Versioned qb.softDelete refused]',
    names: 'softDelete()',
    write: (r, row) => r.createQueryBuilder().softDelete().where('id = :id', { id: row.id }).execute(),
  },
  {
    tag: '[coverage typeorm @Versioned qb.restore refused]',
    names: 'restore()',
    softDeleted: true,
    write: (r, row) => r.createQueryBuilder().restore().where('id = :id', { id: row.id }).execute(),
  },
  {
    tag: '[coverage typeorm @Versioned qb.insert(orUpdate) refused]',
    names: 'upsert()',
    write: (r, row) => r.createQueryBuilder().insert().values({ slug: row.slug, title: 'qb upsert' }).orUpdate(['title'], ['slug']).execute(),
  },
];

const WRITE_SQL = /^\s*(insert|update|delete|truncate)\b/i;

describeEachBackend(
  'coverage: @Versioned writes that check no version (TypeORM)',
  [CovVwDoc, CovVwAllowedDoc, CovVwPlainDoc, CovVwTag, CovVwOwner, CovVwFolder],
  (env) => {
    const repo = <T extends Doc>(E: new () => T) => env.ds.getRepository(E) as unknown as Repository<Doc>;
    const col = (name: string) => env.ds.driver.escape(name);

    async function seed(E: DocClass, softDeleted = false): Promise<Doc> {
      const r = repo(E);
      const row = await r.save(r.create({ slug: `s${process.pid}-${++slugs}`, title: 'seed' }));
      if (softDeleted) {
        // a raw statement (not seen by ormlock): the row starts soft-deleted
        await env.ds.query(`UPDATE ${col(r.metadata.tableName)} SET ${col('deletedAt')} = CURRENT_TIMESTAMP WHERE ${col('id')} = ${Number(row.id)}`);
      }
      return row;
    }
    const rows = (E: DocClass) => repo(E).find({ withDeleted: true, order: { id: 'ASC' } });
    /** A concurrent writer ormlock does not see (raw SQL): the row's version moves on. */
    const bumpRaw = (E: DocClass, id: number) =>
      env.ds.query(`UPDATE ${col(repo(E).metadata.tableName)} SET ${col('version')} = ${col('version')} + 1 WHERE ${col('id')} = ${Number(id)}`);

    for (const { tag, names, method, write, softDeleted } of WRITES) {
      it(`${tag} LockConfigError naming ${names} and uncheckedWrites, before any statement: no row changed`, async function () {
        if (method && !repositoryHas(method)) this.skip();
        const row = await seed(CovVwDoc, softDeleted);
        const before = await rows(CovVwDoc);
        env.log.start();
        const error = await rejection(write(repo(CovVwDoc), row));
        const sent = env.log.stop();
        expect(error).to.be.instanceOf(LockConfigError);
        expect(error.message).to.include(`@Versioned CovVwDoc: ${names}`).and.include("uncheckedWrites: 'allow'");
        expect(error.details).to.include({ entity: 'CovVwDoc' });
        expect(sent.filter((q) => WRITE_SQL.test(q))).to.deep.equal([]);
        expect(await rows(CovVwDoc)).to.deep.equal(before);
      });
    }

    it("uncheckedWrites: 'allow': each of those writes runs as TypeORM's own (the row changes, no error)", async function () {
      for (const { tag, method, write, softDeleted } of WRITES) {
        if (method && !repositoryHas(method)) continue;
        if (method === 'deleteAll' || method === 'clear') continue; // would empty the table the others use: checked last
        const row = await seed(CovVwAllowedDoc, softDeleted);
        const before = JSON.stringify(await repo(CovVwAllowedDoc).findOne({ where: { id: row.id }, withDeleted: true }));
        await write(repo(CovVwAllowedDoc), row).catch((e) => expect.fail(`${tag}: ${e}`));
        const after = JSON.stringify(await repo(CovVwAllowedDoc).findOne({ where: { id: row.id }, withDeleted: true }));
        expect(after, tag).to.not.equal(before);
      }
      if (repositoryHas('deleteAll')) {
        await (repo(CovVwAllowedDoc) as any).deleteAll();
        expect(await rows(CovVwAllowedDoc)).to.deep.equal([]);
      }
      await seed(CovVwAllowedDoc);
      await repo(CovVwAllowedDoc).clear();
      expect(await rows(CovVwAllowedDoc)).to.deep.equal([]);
    });

    /** Writes by primary key AND version (each by `=`): checked, 0 affected rows is StaleEntityError. */
    const BY_VERSION: Array<{ tag: string; write: (r: Repository<Doc>, row: Doc) => Promise<unknown>; softDeleted?: boolean }> = [
      {
        tag: '[coverage typeorm @Versioned repository.update({pk,version}) checked]',
        write: (r, row) => r.update({ id: row.id, version: row.version }, { title: 'by version' }),
      },
      { tag: '[coverage typeorm @Versioned repository.delete({pk,version}) checked]', write: (r, row) => r.delete({ id: row.id, version: row.version }) },
      {
        tag: '[coverage typeorm @Versioned repository.softDelete({pk,version}) checked]',
        write: (r, row) => r.softDelete({ id: row.id, version: row.version }),
      },
      {
        tag: '[coverage typeorm @Versioned qb.update(where-pk-version) checked]',
        write: (r, row) =>
          r.createQueryBuilder().update().set({ title: 'qb' }).where('id = :id', { id: row.id }).andWhere('version = :v', { v: row.version }).execute(),
      },
    ];
    for (const { tag, write } of BY_VERSION) {
      it(`${tag} naming the version the row has: it writes and moves the version; naming an older one: StaleEntityError, nothing written (allowed entity: silently nothing)`, async () => {
        const r = repo(CovVwDoc);
        const fresh = await seed(CovVwDoc);
        await write(r, fresh);
        const written = await r.findOne({ where: { id: fresh.id }, withDeleted: true });
        expect(written === null || written.version === fresh.version + 1, 'written').to.equal(true);

        const stale = await seed(CovVwDoc);
        await r.save(Object.assign(await r.findOneByOrFail({ id: stale.id }), { hits: 1 })); // a concurrent change: version + 1
        const before = await rows(CovVwDoc);
        const error = await rejection(write(r, stale));
        expect(error).to.be.instanceOf(StaleEntityError);
        expect(error.message).to.include(`CovVwDoc {"id":${stale.id}} is stale`).and.include(`named version ${stale.version}`);
        expect(await rows(CovVwDoc)).to.deep.equal(before);

        // the control, uncheckedWrites: 'allow': TypeORM's own result, 0 rows and no error
        const a = repo(CovVwAllowedDoc);
        const allowed = await seed(CovVwAllowedDoc);
        await a.save(Object.assign(await a.findOneByOrFail({ id: allowed.id }), { hits: 1 }));
        expect(((await write(a, allowed)) as { affected?: number }).affected).to.equal(0);
      });
    }

    it('[coverage typeorm @Versioned repository.update({pk,version}) checked] 8 concurrent read-then-update({ id, version }) increments under retryOnConflict are exact; the control (allowed entity) loses some silently', async () => {
      const N = 8;
      const increments = async (E: typeof CovVwDoc | typeof CovVwAllowedDoc) => {
        const r = repo(E);
        const { id } = await seed(E);
        const results = await race(N, () =>
          retryOnConflict(
            async () => {
              const row = await r.findOneByOrFail({ id });
              await sleep(30);
              await r.update({ id, version: row.version }, { hits: row.hits + 1 });
            },
            { attempts: 50, backoffMs: 5 },
          ),
        );
        expect(results.filter((x) => x.status === 'rejected').map((x) => String((x as PromiseRejectedResult).reason))).to.deep.equal([]);
        return (await r.findOneByOrFail({ id })).hits;
      };
      expect(await increments(CovVwAllowedDoc), 'control').to.be.lessThan(N);
      expect(await increments(CovVwDoc)).to.equal(N);
    });

    it('a raw query is not seen: [coverage typeorm @Versioned query cannot-be-seen] it writes, unchecked', async () => {
      const row = await seed(CovVwDoc);
      await env.ds.query(`UPDATE ${col('cov_vw_docs')} SET ${col('title')} = 'raw' WHERE ${col('id')} = ${Number(row.id)}`);
      expect((await repo(CovVwDoc).findOneByOrFail({ id: row.id })).title).to.equal('raw');
    });

    it('save() and remove() still write, checked: a stale save is StaleEntityError', async () => {
      const r = repo(CovVwDoc);
      const row = await seed(CovVwDoc);
      const mine = await r.findOneByOrFail({ id: row.id });
      const other = await r.findOneByOrFail({ id: row.id });
      other.title = 'other';
      await r.save(other);
      expect(other.version).to.equal(row.version + 1);
      mine.title = 'mine';
      expect(await rejection(r.save(mine))).to.be.instanceOf(StaleEntityError);
      await r.remove(other);
      expect(await r.findOneBy({ id: row.id })).to.equal(null);
    });

    it('[coverage typeorm @Versioned repository.softRemove checked] softRemove() of a loaded object: soft-deletes and moves the version; of a stale one: StaleEntityError, nothing written; the control (TypeORM’s own @VersionColumn) soft-deletes the stale object', async () => {
      const softRemoveStale = async (E: DocClass) => {
        const r = repo(E);
        const row = await seed(E);
        const stale = await r.findOneByOrFail({ id: row.id });
        await bumpRaw(E, row.id);
        return {
          row,
          result: await r.softRemove(stale).then(
            () => null,
            (e) => e,
          ),
        };
      };
      const control = await softRemoveStale(CovVwPlainDoc);
      expect(control.result, 'control').to.equal(null);
      expect(await repo(CovVwPlainDoc).findOneBy({ id: control.row.id }), 'control: soft-deleted').to.equal(null);
      const checked = await softRemoveStale(CovVwDoc);
      expect(checked.result).to.be.instanceOf(StaleEntityError);
      expect(checked.result.message).to.include('the softRemove wrote nothing');
      expect(await repo(CovVwDoc).findOneBy({ id: checked.row.id }), 'not soft-deleted').to.include({ version: checked.row.version + 1 });

      const fresh = await seed(CovVwDoc);
      const loaded = await repo(CovVwDoc).findOneByOrFail({ id: fresh.id });
      await repo(CovVwDoc).softRemove(loaded);
      expect(loaded.version).to.equal(fresh.version + 1);
      expect(await repo(CovVwDoc).findOneBy({ id: fresh.id })).to.equal(null);
    });

    it('[coverage typeorm @Versioned repository.recover checked] recover() of a loaded soft-deleted object: restores it; of a stale one: StaleEntityError, still deleted; the control recovers the stale object', async () => {
      const recoverStale = async (E: DocClass) => {
        const r = repo(E);
        const row = await seed(E, true);
        const stale = await r.findOneOrFail({ where: { id: row.id }, withDeleted: true });
        await bumpRaw(E, row.id);
        return {
          row,
          result: await r.recover(stale).then(
            () => null,
            (e) => e,
          ),
        };
      };
      const control = await recoverStale(CovVwPlainDoc);
      expect(control.result, 'control').to.equal(null);
      expect(await repo(CovVwPlainDoc).findOneBy({ id: control.row.id }), 'control: recovered').to.not.equal(null);
      const checked = await recoverStale(CovVwDoc);
      expect(checked.result).to.be.instanceOf(StaleEntityError);
      expect(checked.result.message).to.include('the recover wrote nothing');
      expect(await repo(CovVwDoc).findOneBy({ id: checked.row.id }), 'still soft-deleted').to.equal(null);

      const fresh = await seed(CovVwDoc, true);
      const loaded = await repo(CovVwDoc).findOneOrFail({ where: { id: fresh.id }, withDeleted: true });
      await repo(CovVwDoc).recover(loaded);
      expect(loaded.version).to.equal(fresh.version + 1);
      expect(await repo(CovVwDoc).findOneBy({ id: fresh.id })).to.not.equal(null);
    });

    it('a save() of the delete-date column of the loaded object is checked too (and a stale one is StaleEntityError); so is restoring it', async () => {
      const r = repo(CovVwDoc);
      const row = await seed(CovVwDoc);
      const stale = await r.findOneByOrFail({ id: row.id });
      const loaded = await r.findOneByOrFail({ id: row.id });
      loaded.deletedAt = new Date();
      await r.save(loaded);
      expect(await r.findOneBy({ id: row.id }), 'soft-deleted').to.equal(null);
      stale.deletedAt = new Date();
      stale.title = 'stale';
      expect(await rejection(r.save(stale))).to.be.instanceOf(StaleEntityError);
      const deleted = await r.findOneOrFail({ where: { id: row.id }, withDeleted: true });
      expect(deleted).to.include({ title: 'seed', version: row.version + 1 });
      deleted.deletedAt = null;
      await r.save(deleted);
      expect((await r.findOneByOrFail({ id: row.id })).version).to.equal(row.version + 2);
    });

    it('a subscriber’s own update() of a versioned row inside a save() is refused (it is the user’s write, not the flush’s); the save writes nothing', async () => {
      const r = repo(CovVwDoc);
      const row = await seed(CovVwDoc);
      const loaded = await r.findOneByOrFail({ id: row.id });
      loaded.title = 'poke';
      const error = await rejection(r.save(loaded));
      expect(error).to.be.instanceOf(LockConfigError);
      expect(error.message).to.include('@Versioned CovVwDoc: update()');
      expect(await r.findOneByOrFail({ id: row.id })).to.include({ title: 'seed', hits: 0, version: row.version });
    });

    it("[coverage typeorm @Versioned qb.relation.add/remove(ManyToMany) refused] a relation query builder's add()/remove() of an owned ManyToMany (junction rows, the version unmoved): LockConfigError, nothing written", async () => {
      const tag = await env.ds.getRepository(CovVwTag).save({ name: 'rel' });
      const row = await seed(CovVwDoc);
      const relation = () => env.ds.createQueryBuilder().relation(CovVwDoc, 'tags').of(row.id);
      env.log.start();
      const added = await rejection(relation().add(tag.id));
      const removed = await rejection(relation().remove(tag.id));
      const sent = env.log.stop();
      for (const error of [added, removed]) {
        expect(error).to.be.instanceOf(LockConfigError);
        expect(error.message).to.include("@Versioned CovVwDoc: qb.relation(…, 'tags')").and.include("uncheckedWrites: 'allow'");
      }
      expect(sent.filter((q) => WRITE_SQL.test(q))).to.deep.equal([]);
      const reread = await env.ds.getRepository(CovVwDoc).findOneOrFail({ where: { id: row.id }, relations: { tags: true } });
      expect(reread.tags).to.deep.equal([]);
      expect(reread.version).to.equal(row.version);
    });

    it('a ManyToMany change still moves the owner’s version (ormlock’s own bump), and the save is checked', async () => {
      const tag = await env.ds.getRepository(CovVwTag).save({ name: 'a' });
      const row = await seed(CovVwDoc);
      const r = env.ds.getRepository(CovVwDoc);
      const loaded = await r.findOneOrFail({ where: { id: row.id }, relations: { tags: true } });
      loaded.tags.push(tag);
      await r.save(loaded);
      const reread = await r.findOneOrFail({ where: { id: row.id }, relations: { tags: true } });
      expect(reread.tags.map((t) => t.name)).to.deep.equal(['a']);
      expect(reread.version).to.equal(row.version + 1);
    });

    it('a OneToMany change of a non-versioned owner still sets the versioned children’s foreign key (TypeORM’s own update)', async () => {
      const row = await seed(CovVwDoc);
      const owners = env.ds.getRepository(CovVwOwner);
      const owner = await owners.save(owners.create({}));
      owner.docs = [await env.ds.getRepository(CovVwDoc).findOneByOrFail({ id: row.id })];
      await owners.save(owner);
      const reread = await env.ds.getRepository(CovVwDoc).findOneOrFail({ where: { id: row.id }, relations: { owner: true } });
      expect(reread.owner?.id).to.equal(owner.id);
    });

    it('createOrFind() on a versioned entity still inserts, and finds the existing row', async () => {
      const r = env.ds.getRepository(CovVwDoc);
      const slug = `cof${process.pid}-${++slugs}`;
      const created = await createOrFind(r, { slug }, { title: 'created' });
      const found = await createOrFind(r, { slug }, { title: 'other' });
      expect(found.id).to.equal(created.id);
      expect(found.title).to.equal('created');
    });

    it('a materialized-path tree of a versioned entity still saves (TypeORM’s tree executor updates the path)', async () => {
      const folders = env.ds.getTreeRepository(CovVwFolder);
      const root = await folders.save(folders.create({ name: 'root' }));
      const child = await folders.save(folders.create({ name: 'child', parent: root }));
      expect((await folders.findDescendants(root)).map((f) => f.id).sort()).to.deep.equal([root.id, child.id].sort());
    });

    it("a declaration made after installLocking takes effect: versioned(E, { uncheckedWrites: 'allow' }) then 'refuse'", async () => {
      const row = await seed(CovVwAllowedDoc);
      try {
        versioned(CovVwAllowedDoc, { uncheckedWrites: 'refuse' });
        expect(await rejection(repo(CovVwAllowedDoc).update(row.id, { title: 'late' }))).to.be.instanceOf(LockConfigError);
      } finally {
        versioned(CovVwAllowedDoc, { uncheckedWrites: 'allow' });
      }
      await repo(CovVwAllowedDoc).update(row.id, { title: 'late' });
    });
  },
  { subscribers: [CovVwPoke] },
);

describe('@Versioned({ uncheckedWrites }) option values', () => {
  it('a value other than refuse/allow is LockConfigError naming the entity and the option', () => {
    class Bad {}
    for (const value of ['yes', true, null, 1]) {
      const error = (() => {
        try {
          Versioned({ uncheckedWrites: value as never })(Bad);
        } catch (e) {
          return e as LockConfigError;
        }
        return expect.fail(`accepted ${String(value)}`);
      })();
      expect(error).to.be.instanceOf(LockConfigError);
      expect(error.message).to.include('@Versioned on Bad').and.include('uncheckedWrites');
    }
    expect(() => versioned(Bad, { unchecked: 'allow' } as never)).to.throw(LockConfigError, /unknown option 'unchecked'/);
  });
});
