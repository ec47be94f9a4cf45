import { expect } from 'chai';
import { Column, Entity, ManyToOne, OneToMany, PrimaryGeneratedColumn, type Repository } from 'typeorm';
import {
  AroundCreate,
  LockConfigError,
  LockNotAvailableError,
  LockTimeoutError,
  StaleEntityError,
  TransactionRequiredError,
  addAroundCreate,
  installLocking,
  lock,
  lockParent,
  transaction,
} from '../src';
import { Barrier, race } from '../src/testing';
import {
  DocSubscriber,
  NestedSetSubscriber,
  NsDoc,
  NsFolder,
  NsNote,
  NsPage,
  NsPageBase,
  NsPagePlain,
  NsSite,
  nestedSetTiming,
  subscriberProbe,
  trace,
} from './fixtures/nested-set';
import { entityRecord } from '../src/metadata/registry';
import { createDataSource } from './support/backends';
import { describeEachBackend } from './support/suite';

/** Every pair of [lft, rgt] intervals is nested or disjoint, and no bound is used twice. */
function treeProblems(pages: Array<{ lft: number; rgt: number }>): string[] {
  const problems: string[] = [];
  const bounds = new Map<number, number>();
  for (const p of pages) for (const b of [p.lft, p.rgt]) bounds.set(b, (bounds.get(b) ?? 0) + 1);
  for (const [b, n] of bounds) if (n > 1) problems.push(`bound ${b} used ${n} times`);
  for (let i = 0; i < pages.length; i++) {
    for (let j = i + 1; j < pages.length; j++) {
      const [a, b] = [pages[i], pages[j]];
      const disjoint = a.rgt < b.lft || b.rgt < a.lft;
      const nested = (a.lft < b.lft && b.rgt < a.rgt) || (b.lft < a.lft && a.rgt < b.rgt);
      if (!disjoint && !nested) problems.push(`[${a.lft},${a.rgt}] overlaps [${b.lft},${b.rgt}]`);
    }
  }
  return problems;
}

describeEachBackend(
  'AroundCreate / lockParent',
  [NsSite, NsPage, NsPagePlain, NsFolder, NsDoc, NsNote],
  (env) => {
    const WORKERS = 8;
    const PER_WORKER = 25;
    let sites: Repository<NsSite>;

    before(function () {
      if (!env.ds) return;
      sites = env.ds.getRepository(NsSite);
    });

    async function createPages(cls: typeof NsPage | typeof NsPagePlain, siteId: number) {
      const pages = env.ds.getRepository<NsPageBase>(cls);
      const results = await race(WORKERS, async (w) => {
        for (let i = 0; i < PER_WORKER; i++) {
          const page = pages.create({ title: `w${w}-${i}`, siteId });
          // half the creations in TypeORM's own save transaction, half in an ambient one
          if ((w + i) % 2 === 0) await pages.save(page);
          else await transaction(() => pages.save(page));
        }
      });
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
      return { failures, rows: await pages.find({ where: { siteId }, order: { lft: 'ASC' } }) };
    }

    it(`control: ${WORKERS} workers × ${PER_WORKER} page creations without @AroundCreate corrupt the nested set`, async () => {
      const site = await sites.save(sites.create({ name: 'control' }));
      const { failures, rows } = await createPages(NsPagePlain, site.id);
      expect(failures).to.deep.equal([]);
      expect(rows).to.have.length(WORKERS * PER_WORKER);
      const lfts = new Set(rows.map((r) => r.lft));
      expect(lfts.size, 'duplicate lft values expected without the lock').to.be.lessThan(rows.length);
      expect(treeProblems(rows).length).to.be.greaterThan(0);
    });

    it(`[coverage typeorm @AroundCreate repository.save(insert) locked] @AroundCreate(lockParent('site')): ${WORKERS} × ${PER_WORKER} creations give distinct, nested-or-disjoint intervals`, async () => {
      const site = await sites.save(sites.create({ name: 'locked' }));
      const { failures, rows } = await createPages(NsPage, site.id);
      expect(failures).to.deep.equal([]);
      expect(rows).to.have.length(WORKERS * PER_WORKER);
      expect(treeProblems(rows)).to.deep.equal([]);
      expect(rows.map((r) => r.lft)).to.deep.equal(Array.from({ length: rows.length }, (_, i) => 2 * i + 1));
    });

    it('[coverage typeorm @AroundCreate repository.insert locked] repository.insert() outside a transaction is protected too (the hook opens one)', async () => {
      const site = await sites.save(sites.create({ name: 'insert' }));
      const pages = env.ds.getRepository(NsPage);
      const results = await race(4, async (w) => {
        for (let i = 0; i < 10; i++) await pages.insert({ title: `i${w}-${i}`, siteId: site.id });
      });
      expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
      const rows = await pages.findBy({ siteId: site.id });
      expect(rows).to.have.length(40);
      expect(treeProblems(rows)).to.deep.equal([]);
    });

    it('creations in two different sites are not serialized against each other', async () => {
      const [a, b] = await sites.save([sites.create({ name: 'A' }), sites.create({ name: 'B' })]);
      const pages = env.ds.getRepository(NsPage);
      const regions: Array<{ site: string; start: number; end: number }> = [];
      const saved = nestedSetTiming.gapMs;
      nestedSetTiming.gapMs = 300; // the protected region: lock taken → subscriber → INSERT → commit
      const probe = (site: NsSite) => async () => {
        const page: any = pages.create({ title: 't', siteId: site.id });
        const region = { site: site.name, start: 0, end: 0 };
        page.__region = region;
        await pages.save(page);
        regions.push(region);
      };
      // a last hook, after lockParent: the lock is held from here until commit; the region
      // ends when the subscriber has computed lft/rgt (still before the INSERT and the commit)
      addAroundCreate(NsPage, (page: any) => page.__region && (page.__region.start = Date.now()));
      nestedSetTiming.onComputed = (page: any) => page.__region && (page.__region.end = Date.now());
      try {
        await race(3, (i) => probe(i < 2 ? a : b)());
      } finally {
        nestedSetTiming.gapMs = saved;
        nestedSetTiming.onComputed = undefined;
        entityRecord(NsPage).aroundCreate.pop();
      }
      const [a1, a2] = regions.filter((r) => r.site === 'A');
      const [b1] = regions.filter((r) => r.site === 'B');
      expect(a1.start).to.be.greaterThan(0);
      expect(b1.start).to.be.greaterThan(0);
      // same site: serialized (the second starts only after the first committed)
      expect(a1.end <= a2.start || a2.end <= a1.start, `A regions ${JSON.stringify([a1, a2])}`).to.equal(true);
      // different sites: they overlap in time
      const overlaps = (x: typeof b1, y: typeof b1) => x.start < y.end && y.start < x.end;
      expect(overlaps(b1, a1) || overlaps(b1, a2), `B ${JSON.stringify(b1)} overlaps no A region ${JSON.stringify([a1, a2])}`).to.equal(true);
    });

    it('a site id that does not exist: StaleEntityError naming entity and relation, no page row', async () => {
      const pages = env.ds.getRepository(NsPage);
      for (const run of [
        () => pages.save(pages.create({ title: 'orphan', siteId: 987654 })),
        () => transaction(() => pages.save(pages.create({ title: 'orphan', siteId: 987654 }))),
        () => pages.insert({ title: 'orphan', siteId: 987654 }),
      ]) {
        const err = await run().then(
          () => null,
          (e) => e,
        );
        expect(err).to.be.instanceOf(StaleEntityError);
        expect(err.entity).to.equal('NsPage');
        expect(err.id).to.equal(987654);
        expect(err.details.relation).to.equal('site');
        expect(err.message).to.contain("lockParent('site') on NsPage").and.contain('NsSite').and.contain('987654');
      }
      expect(await pages.countBy({ siteId: 987654 })).to.equal(0);
    });

    it('hooks run in declaration order, before an earlier-registered subscriber and a @BeforeInsert listener, which see the locked, reloaded parent', async () => {
      const folders = env.ds.getRepository(NsFolder);
      const docs = env.ds.getRepository(NsDoc);
      const folder = await folders.save(folders.create({ name: 'old' }));
      await folders.update({ id: folder.id }, { name: 'new' }); // the loaded object is now stale
      let lockedWhileSubscriberRan: unknown;
      subscriberProbe.check = async (doc) => {
        // another connection cannot take the folder's row: the hook's lock is held
        lockedWhileSubscriberRan = await transaction(() => lock(folders.create({ id: folder.id }), { timeoutMs: 0 }), {
          propagation: 'requires_new',
        }).then(
          () => 'not locked',
          (e) => e,
        );
        expect((doc.folder as NsFolder).name).to.equal('new');
      };
      trace.length = 0;
      try {
        const doc = docs.create({ title: 'd' });
        doc.folder = folder; // the user's own (stale) object, not a copy made by create()
        await docs.save(doc);
        expect(trace).to.deep.equal(['hook1:new', 'hook2', 'listener:new', 'subscriber:new']);
        expect(lockedWhileSubscriberRan).to.be.instanceOf(LockNotAvailableError);
        expect(folder.name, 'the parent object was reloaded in place').to.equal('new');
        expect((await docs.findOneByOrFail({ id: doc.id })).seenByListener).to.equal('new');
      } finally {
        subscriberProbe.check = undefined;
      }
    });

    it('lockParent works with the parent object, only the join column, a { id } object and a bare id', async () => {
      const folders = env.ds.getRepository(NsFolder);
      const docs = env.ds.getRepository(NsDoc);
      const folder = await folders.save(folders.create({ name: 'f0' }));
      const forms: Array<[string, () => Partial<NsDoc>]> = [
        ['object', () => ({ folder: folders.create({ id: folder.id, name: 'stale' }) })],
        ['join column only', () => ({ folderId: folder.id })],
        ['{ id } object', () => ({ folder: { id: folder.id } })],
        ['bare id on the relation', () => ({ folder: folder.id })],
      ];
      for (const [form, make] of forms) {
        await folders.update({ id: folder.id }, { name: `name:${form}` });
        trace.length = 0;
        const doc = await docs.save(docs.create({ title: form, ...make() } as NsDoc));
        expect(trace[0], form).to.equal(`hook1:name:${form}`);
        const row = await docs.findOneByOrFail({ id: doc.id });
        expect(row.folderId, form).to.equal(folder.id);
        expect(row.seenByListener, form).to.equal(`name:${form}`);
        expect((doc.folder as NsFolder).name, form).to.equal(`name:${form}`);
      }
    });

    it('the function form, optional: a nullable parent may be absent; a present one is locked and reloaded', async () => {
      const folders = env.ds.getRepository(NsFolder);
      const notes = env.ds.getRepository(NsNote);
      await notes.save(notes.create({ folder: null, folderName: null }));
      const folder = await folders.save(folders.create({ name: 'n0' }));
      await folders.update({ id: folder.id }, { name: 'n1' });
      const note = notes.create();
      note.folder = folder;
      await notes.save(note);
      expect(folder.name).to.equal('n1');
    });

    it('a required parent that is not given: LockConfigError naming the relation and column, nothing inserted', async () => {
      const docs = env.ds.getRepository(NsDoc);
      const before = await docs.count();
      const err = await docs.save(docs.create({ title: 'no folder' })).then(
        () => null,
        (e) => e,
      );
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.contain("lockParent('folder') on NsDoc").and.contain("'folderId'");
      expect(await docs.count()).to.equal(before);
    });

    it("the parent's @Pessimistic policy applies: a held parent row times out with LockTimeoutError, nothing inserted", async () => {
      const folders = env.ds.getRepository(NsFolder);
      const docs = env.ds.getRepository(NsDoc);
      const folder = await folders.save(folders.create({ name: 'held' }));
      const held = new Barrier(2);
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const holder = transaction(async () => {
        await lock(folders.create({ id: folder.id }));
        await held.wait();
        await released;
      });
      await held.wait();
      try {
        const started = Date.now();
        const err = await docs.save(docs.create({ title: 'late', folderId: folder.id })).then(
          () => null,
          (e) => e,
        );
        expect(err).to.be.instanceOf(LockTimeoutError);
        expect(err.entity).to.equal('NsFolder');
        expect(Date.now() - started).to.be.within(400, 5000);
      } finally {
        release();
        await holder;
      }
      expect(await docs.countBy({ folderId: folder.id })).to.equal(0);
    });

    it("the lock is taken on the INSERT's own connection, not on the ambient transaction's", async () => {
      const site = await sites.save(sites.create({ name: 'own runner' }));
      const sentinel = new Error('roll back');
      const err = await transaction(async () => {
        const qr = env.ds.createQueryRunner();
        await qr.connect();
        await qr.startTransaction();
        try {
          await qr.manager.save(qr.manager.create(NsPage, { title: 'p', siteId: site.id }));
          // the ambient transaction does not hold the site: it cannot lock it while qr does
          const attempt = await lock(sites.create({ id: site.id }), { timeoutMs: 0 }).then(
            () => 'locked',
            (e) => e,
          );
          expect(attempt).to.be.instanceOf(LockNotAvailableError);
        } finally {
          await qr.rollbackTransaction();
          await qr.release();
        }
        throw sentinel;
      }).then(
        () => null,
        (e) => e,
      );
      expect(err).to.equal(sentinel);
      expect(await env.ds.getRepository(NsPage).countBy({ siteId: site.id })).to.equal(0);
    });

    it('save(…, { transaction: false }) outside a transaction: TransactionRequiredError, nothing inserted', async () => {
      const site = await sites.save(sites.create({ name: 'no tx' }));
      const pages = env.ds.getRepository(NsPage);
      const err = await pages.save(pages.create({ title: 'x', siteId: site.id }), { transaction: false }).then(
        () => null,
        (e) => e,
      );
      expect(err).to.be.instanceOf(TransactionRequiredError);
      expect(err.message).to.contain('NsPage');
      expect(await pages.countBy({ siteId: site.id })).to.equal(0);
    });

    it('lockParent with an unknown or non-owning relation: LockConfigError at installLocking', async () => {
      @AroundCreate(lockParent('nope'))
      @Entity('ns_bad_unknown')
      class BadUnknown {
        @PrimaryGeneratedColumn() id!: number;
        @ManyToOne(() => NsSite) site?: NsSite;
      }
      @AroundCreate(lockParent('children'))
      @Entity('ns_bad_inverse')
      class BadInverse {
        @PrimaryGeneratedColumn() id!: number;
        @OneToMany(() => BadChild, (c) => c.parent) children?: BadChild[];
      }
      @Entity('ns_bad_child')
      class BadChild {
        @PrimaryGeneratedColumn() id!: number;
        @ManyToOne(() => BadInverse, (p) => p.children) parent?: BadInverse;
        @Column({ type: 'int', nullable: true }) n?: number;
      }
      for (const [entities, pattern] of [
        [[NsSite, BadUnknown], /lockParent\('nope'\) on BadUnknown: BadUnknown has no relation 'nope' \(its parent relations: 'site'\)/],
        [[BadInverse, BadChild], /lockParent\('children'\) on BadInverse: 'children' is a one-to-many relation/],
      ] as const) {
        const ds = await createDataSource(env.name, [...entities], { fresh: false });
        try {
          const err = await installLocking(ds!).then(
            () => null,
            (e) => e,
          );
          expect(err).to.be.instanceOf(LockConfigError);
          expect(err.message).to.match(pattern);
        } finally {
          await ds!.destroy();
        }
      }
    });

    it('@AroundCreate with a non-function hook is a LockConfigError when the class is defined', () => {
      expect(() => AroundCreate(42 as any)(class Foo {})).to.throw(LockConfigError, /@AroundCreate on Foo: hook 1 is number/);
      expect(() => lockParent('')).to.throw(LockConfigError);
    });
  },
  { subscribers: [DocSubscriber, NestedSetSubscriber] },
);
