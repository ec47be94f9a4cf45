import { expect } from 'chai';
import { race } from '../../src/testing';
import { MikroNestedSetSubscriber, MkDoc, MkFolder, MkPage, MkPagePlain, MkSite, TraceSubscriber, trace } from '../fixtures/mikro-nested-set';
import { describeEachMikroBackend } from '../support/mikro-suite';

describeEachMikroBackend(
  '@AroundCreate(lockParent) on MikroORM',
  [MkSite, MkPage, MkPagePlain, MkFolder, MkDoc],
  (env) => {
    const N = 12;

    async function createPages(cls: typeof MkPage | typeof MkPagePlain) {
      const seed = env.orm.em.fork();
      const site = seed.create(MkSite, { name: `site-${cls.name}` });
      await seed.flush();
      const results = await race(N, async (i) => {
        const em = env.orm.em.fork();
        em.create(cls as typeof MkPage, { title: `p${i}`, site: em.getReference(MkSite, site.id) });
        await em.flush(); // MikroORM's own implicit transaction
      });
      const failures = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
      const pages = await env.orm.em.fork().find(cls as typeof MkPage, { site: site.id });
      const positions = pages.map((p) => p.lft);
      return { failures, positions, distinct: new Set(positions).size };
    }

    it('control: concurrent pages of one site get duplicate nested-set positions', async () => {
      const { failures, positions, distinct } = await createPages(MkPagePlain);
      expect(failures).to.deep.equal([]);
      expect(distinct, `positions ${positions}`).to.be.lessThan(N);
    });

    it('@AroundCreate(lockParent("site")): every page gets its own position', async () => {
      const { failures, positions, distinct } = await createPages(MkPage);
      expect(failures).to.deep.equal([]);
      expect(distinct, `positions ${positions}`).to.equal(N);
      expect([...positions].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: N }, (_, i) => 1 + 2 * i));
    });

    it('the parent is locked and reloaded on the flush’s transaction before any beforeCreate hook or subscriber', async () => {
      const seed = env.orm.em.fork();
      const folder = seed.create(MkFolder, { name: 'docs' });
      await seed.flush();
      await env.orm.em.fork().nativeUpdate(MkFolder, { id: folder.id }, { name: 'renamed' }); // the reference below is stale
      trace.length = 0;
      env.log.length = 0;
      const em = env.orm.em.fork();
      em.create(MkDoc, { folder: em.getReference(MkFolder, folder.id) });
      await em.flush();
      expect(trace).to.deep.equal(['hook:renamed', 'entity @BeforeCreate', 'subscriber beforeCreate']);
      const sent = env.log.splice(0).map((q) => q.toLowerCase());
      const lockAt = sent.findIndex((q) => /for update/.test(q));
      expect(lockAt, sent.join('\n')).to.be.greaterThan(0);
      expect(
        sent.findIndex((q) => q.startsWith('insert')),
        sent.join('\n'),
      ).to.be.greaterThan(lockAt);
    });
  },
  { subscribers: [new MikroNestedSetSubscriber(), new TraceSubscriber()] },
);
