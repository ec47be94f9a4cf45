/**
 * The seed's nested-set pages on MikroORM: a beforeCreate subscriber (the tree library) puts each
 * new page after its site's last one, from max(rgt). Concurrent creations read the same max and
 * collide. `@AroundCreate(lockParent('site'))` locks the site row on the flush's own transaction
 * before the subscriber runs, so creations under one site serialize.
 */
import type { MikroORM } from '@mikro-orm/core';
import { race } from '../../../src/testing';
import type { Scenario } from '../../scenario';
import { MPage, MPagePlain, MSite } from '../schema';

const PAGES = 12;

export const scenario: Scenario = {
  name: 'nested-set pages',
  strategy: "@AroundCreate(lockParent('site'))",
  order: 10,
  async run(target, { locked }) {
    const orm = target as unknown as MikroORM;
    const cls = locked ? MPage : MPagePlain;
    const seed = orm.em.fork();
    const site = seed.create(MSite, { name: locked ? 'with lock' : 'without lock' });
    await seed.flush();
    const results = await race(PAGES, async (i) => {
      const em = orm.em.fork();
      em.create(cls as typeof MPage, { title: `page ${i}`, site: em.getReference(MSite, site.id) });
      await em.flush();
    });
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw (failed[0] as PromiseRejectedResult).reason;
    const pages = await orm.em.fork().find(cls as typeof MPage, { site: site.id });
    const duplicates = pages.length - new Set(pages.map((p) => p.lft)).size;
    return { anomalies: duplicates, detail: `${duplicates} of ${PAGES} pages share a position with another` };
  },
};
