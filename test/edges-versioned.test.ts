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
import { EDGE_ENTITIES, EdgePlainPost, EdgePost, EdgeSetting, EdgeTag, sleep } from './fixtures/edges';
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
  it(`${WORKERS} workers each add their own tag (load, widen the window, push, save) under retryOnConflict: every tag is there`, async () => {
    const created = await posts().save(posts().create({ title: 'race', tags: [] }));
    const mine = await Promise.all(Array.from({ length: WORKERS }, (_, i) => tag(`w${i}`)));
    const results = await race(WORKERS, (i) =>
      retryOnConflict(
        async () => {
          const p = await loadPost(created.id);
          await sleep(10 + 15 * i); // staggered: each save lands after the previous ones
          p.tags.push(mine[i]);
          await posts().save(p);
        },
        { attempts: 20, backoffMs: 5 },
      ),
    );
    expect(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).to.deep.equal([]);
    expect(labels(await loadPost(created.id))).to.have.length(WORKERS);
  });

  it(`control: the same ${WORKERS} workers on an entity with TypeORM’s own @VersionColumn (no @Versioned) lose tags`, async () => {
    const created = await plain().save(plain().create({ title: 'race', tags: [] }));
    const mine = await Promise.all(Array.from({ length: WORKERS }, (_, i) => tag(`c${i}`)));
    const allRead = new Barrier(WORKERS);
    await race(WORKERS, async (i) => {
      const p = await plain().findOneOrFail({ where: { id: created.id }, relations: { tags: true } });
      // every worker has read before the first save (however late the pool opens its connections), then the saves in turn
      await Promise.race([allRead.wait(), sleep(5000)]);
      await sleep(15 * i);
      p.tags.push(mine[i]);
      await plain().save(p);
    });
    const now = await plain().findOneOrFail({ where: { id: created.id }, relations: { tags: true } });
    expect(now.tags.length, 'tags lost: the race is real').to.be.below(WORKERS);
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
