/**
 * `@Versioned` gaps: a `save()` that changes an owned ManyToMany of a versioned
 * entity moves its version and is checked (as Hibernate does for owned collections), so a stale
 * object can no longer remove a tag someone else added. `upsert()`, `update()` and query-builder
 * updates check no version: they are refused unless the entity declares `uncheckedWrites: 'allow'`
 * (test/coverage/typeorm-versioned-writes.test.ts); when allowed, they move the version too.
 */
import { expect } from 'chai';
import { StaleEntityError, retryOnConflict } from '../src';
import { Barrier, race } from '../src/testing';
import { EDGE_ENTITIES, EdgePlainPost, EdgePost, EdgeSetting, EdgeTag } from './fixtures/edges';
import { deferred } from './support/outside';
import { reasons } from './support/rejection';
import { describeEachBackend } from './support/suite';

describeEachBackend('edges: @Versioned and owned ManyToMany, upsert, update', EDGE_ENTITIES, (env) => {
  const posts = () => env.ds.getRepository(EdgePost);
  const plain = () => env.ds.getRepository(EdgePlainPost);
  const tags = () => env.ds.getRepository(EdgeTag);
  const settings = () => env.ds.getRepository(EdgeSetting);
  const tag = (label: string) => tags().save(tags().create({ label }));
  const loadPost = (id: number) => posts().findOneOrFail({ where: { id }, relations: { tags: true } });
  const labels = (p: { tags: EdgeTag[] }) => p.tags.map((t) => t.label).sort();

  it('B adds a tag and saves: the version moves; the stale A then saves a title change: StaleEntityError, and B’s tag stays', async () => {
    const t1 = await tag('t1');
    const created = await posts().save(posts().create({ title: 'p', tags: [t1] }));
    const a = await loadPost(created.id);
    const b = await loadPost(created.id);
    b.tags.push(await tag('t2'));
    await posts().save(b);
    expect(b.version, 'B’s object has the new version').to.equal(created.version + 1);
    expect((await loadPost(created.id)).version, 'the row has the new version').to.equal(created.version + 1);
    a.title = 'changed by A';
    const err = await posts()
      .save(a)
      .then(
        () => null,
        (e) => e,
      );
    expect(err).to.be.instanceOf(StaleEntityError);
    const now = await loadPost(created.id);
    expect(labels(now)).to.deep.equal(['t1', 't2']);
    expect(now.title).to.equal('p');
  });

  it('the stale A changes only its tags (drops one): StaleEntityError, nothing written', async () => {
    const [t1, t2] = [await tag('s1'), await tag('s2')];
    const created = await posts().save(posts().create({ title: 'q', tags: [t1, t2] }));
    const a = await loadPost(created.id);
    const b = await loadPost(created.id);
    b.tags.push(await tag('s3'));
    await posts().save(b);
    a.tags = a.tags.filter((t) => t.label !== 's1');
    const err = await posts()
      .save(a)
      .then(
        () => null,
        (e) => e,
      );
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(labels(await loadPost(created.id))).to.deep.equal(['s1', 's2', 's3']);
  });

  it('a save that changes nothing moves nothing; a fresh object adding a tag moves the version once', async () => {
    const created = await posts().save(posts().create({ title: 'r', tags: [] }));
    const p = await loadPost(created.id);
    await posts().save(p);
    expect((await loadPost(created.id)).version).to.equal(created.version);
    p.tags.push(await tag('r1'));
    await posts().save(p);
    expect(p.version).to.equal(created.version + 1);
    expect((await loadPost(created.id)).version).to.equal(created.version + 1);
    p.title = 'r2';
    p.tags.push(await tag('r2'));
    await posts().save(p);
    expect((await loadPost(created.id)).version, 'a column and a tag in one save').to.be.above(created.version + 1);
    expect(p.version).to.equal((await loadPost(created.id)).version);
  });

  const WORKERS = 6;
  /**
   * The lost-update schedule, the same for the guarded test and its control: every worker reads before
   * the first save, then the saves run one after another in worker order, so every object but the first
   * is stale when saved. (Left to overlap, TypeORM saves that start together each read the junction rows
   * before the others' inserts and remove nothing: on a slow machine the control then lost no tag.)
   */
  const readAllThenSaveInTurn = () => {
    const allRead = new Barrier(WORKERS);
    const saved = Array.from({ length: WORKERS }, () => deferred());
    return async <T>(i: number, read: () => Promise<T>, save: (object: T) => Promise<unknown>) => {
      try {
        const object = await allRead.wait(read());
        if (i > 0) await saved[i - 1].promise;
        await save(object);
      } finally {
        saved[i].resolve();
      }
    };
  };

  it(`${WORKERS} workers each add their own tag (all read, then save in turn) under retryOnConflict: every tag is there`, async () => {
    const created = await posts().save(posts().create({ title: 'race', tags: [] }));
    const mine = await Promise.all(Array.from({ length: WORKERS }, (_, i) => tag(`w${i}`)));
    const firstAttempt = readAllThenSaveInTurn();
    let attempts = 0;
    const results = await race(WORKERS, (i) => {
      let mineAttempts = 0;
      const read = () => loadPost(created.id);
      const save = (p: EdgePost) => {
        p.tags.push(mine[i]);
        return posts().save(p);
      };
      return retryOnConflict(
        async () => {
          attempts += 1;
          mineAttempts += 1;
          if (mineAttempts === 1) return firstAttempt(i, read, save);
          await save(await read());
        },
        { attempts: 20, backoffMs: 5 },
      );
    });
    expect(reasons(results).map(String)).to.deep.equal([]);
    expect(attempts, 'every stale first save was refused and retried').to.be.at.least(2 * WORKERS - 1);
    expect(labels(await loadPost(created.id))).to.have.length(WORKERS);
  });

  it(`control: the same ${WORKERS} workers on an entity with TypeORM’s own @VersionColumn (no @Versioned) lose tags`, async () => {
    const created = await plain().save(plain().create({ title: 'race', tags: [] }));
    const mine = await Promise.all(Array.from({ length: WORKERS }, (_, i) => tag(`c${i}`)));
    const inTurn = readAllThenSaveInTurn();
    const results = await race(WORKERS, (i) =>
      inTurn(
        i,
        () => plain().findOneOrFail({ where: { id: created.id }, relations: { tags: true } }),
        (p) => {
          p.tags.push(mine[i]);
          return plain().save(p);
        },
      ),
    );
    expect(reasons(results).map(String)).to.deep.equal([]);
    const now = await plain().findOneOrFail({ where: { id: created.id }, relations: { tags: true } });
    expect(
      now.tags.map((t) => t.label),
      'tags lost: each stale save removed the tags saved before it',
    ).to.deep.equal([`c${WORKERS - 1}`]);
  });

  it("upsert(), update() and a query-builder update of a @Versioned({ uncheckedWrites: 'allow' }) entity move the version", async () => {
    await settings().upsert({ key: 'k1', value: 'a' }, ['key']);
    const v0 = (await settings().findOneByOrFail({ key: 'k1' })).version;
    await settings().upsert({ key: 'k1', value: 'b' }, ['key']);
    const v1 = (await settings().findOneByOrFail({ key: 'k1' })).version;
    expect(v1, 'upsert over an existing row').to.equal(v0 + 1);
    await settings().update({ key: 'k1' }, { value: 'c' });
    const v2 = (await settings().findOneByOrFail({ key: 'k1' })).version;
    expect(v2, 'update()').to.equal(v1 + 1);
    await env.ds.createQueryBuilder().update(EdgeSetting).set({ value: 'd' }).where('key = :k', { k: 'k1' }).execute();
    const v3 = (await settings().findOneByOrFail({ key: 'k1' })).version;
    expect(v3, 'query builder').to.equal(v2 + 1);
  });

  it('a stale object saved after an upsert() moved the row: StaleEntityError', async () => {
    await settings().upsert({ key: 'k2', value: 'a' }, ['key']);
    const stale = await settings().findOneByOrFail({ key: 'k2' });
    await settings().upsert({ key: 'k2', value: 'b' }, ['key']);
    stale.value = 'from a stale object';
    const err = await settings()
      .save(stale)
      .then(
        () => null,
        (e) => e,
      );
    expect(err).to.be.instanceOf(StaleEntityError);
    expect((await settings().findOneByOrFail({ key: 'k2' })).value).to.equal('b');
  });
});
