/**
 * The seed's corrupt page tree: concurrent `site.pages.create!` computed the same lft/rgt,
 * because each read max(rgt) before the other inserted. `around_create :save_with_lock` — here
 * `@AroundCreate(lockParent('site'))` on `Page` — locks the site row first, so the creations
 * of one site's pages serialize and each reads the max its predecessor wrote.
 */
import type { DataSource } from 'typeorm';
import { race } from '../../src/testing';
import type { Scenario } from '../scenario';
import { Page, Site, UnlockedPage, type PageColumns } from '../schema';

const WORKERS = 8;
const PER_WORKER = 10;

export const scenario: Scenario = {
  name: 'nested-set pages',
  strategy: "@AroundCreate(lockParent('site'))",
  order: 10,
  async run(ds: DataSource, { locked }) {
    const site = await ds.getRepository(Site).save({ name: locked ? 'with lock' : 'without lock' });
    const pages = ds.getRepository<PageColumns>(locked ? Page : UnlockedPage);
    // what CreateCorruptPage did: several "threads" each creating pages of one site
    const results = await race(WORKERS, async (w) => {
      for (let i = 0; i < PER_WORKER; i++) await pages.save(pages.create({ title: `page ${w}.${i}`, siteId: site.id }));
    });
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw (failed[0] as PromiseRejectedResult).reason;
    const rows = await pages.findBy({ siteId: site.id });
    const positions = new Set(rows.map((p) => `${p.lft}/${p.rgt}`));
    const anomalies = rows.length - positions.size;
    return { anomalies, detail: `${anomalies} of ${rows.length} pages were given a position (lft/rgt) another page already had` };
  },
};
