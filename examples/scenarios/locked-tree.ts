/**
 * TypeORM's own nested set (`@Tree('nested-set')`) under concurrent writes: every insert reads
 * its parent's `nsright`, then shifts `nsleft`/`nsright` of every row to the right of it across
 * the whole table. Two inserts that read the same `nsright` give two nodes the same bounds, and
 * their shifting UPDATEs deadlock; `lockParent` cannot help (an insert under A moves B's bounds
 * too). `@LockedTree()` takes one lock for the table's tree before TypeORM reads anything, held
 * to COMMIT, so the writes serialize and each sees the bounds its predecessor wrote.
 */
import type { DataSource } from 'typeorm';
import { race } from '../../src/testing';
import type { Scenario } from '../scenario';
import { Category, UnlockedCategory } from '../schema';

const ROUNDS = 3;
const AT_ONCE = 15;

interface Bounds {
  id: number;
  left: number;
  right: number;
}

/** Overlapping intervals and reused bounds: each is a corrupted position. */
function problems(rows: Bounds[]): number {
  let n = 0;
  const seen = new Map<number, number>();
  for (const r of rows) for (const b of [r.left, r.right]) seen.set(b, (seen.get(b) ?? 0) + 1);
  for (const count of seen.values()) if (count > 1) n += count - 1;
  for (let i = 0; i < rows.length; i++) {
    for (let j = i + 1; j < rows.length; j++) {
      const [a, b] = [rows[i], rows[j]];
      const disjoint = a.right < b.left || b.right < a.left;
      const nested = (a.left < b.left && b.right < a.right) || (b.left < a.left && a.right < b.right);
      if (!disjoint && !nested) n += 1;
    }
  }
  return n;
}

export const scenario: Scenario = {
  name: 'TypeORM nested-set tree',
  strategy: '@LockedTree()',
  order: 15,
  async run(ds: DataSource, { locked }) {
    const cls = locked ? Category : UnlockedCategory;
    const repo = ds.getRepository<Category>(cls);
    const table = ds.getMetadata(cls).tablePath;
    let anomalies = 0;
    let failed = 0;
    let total = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // one tree per table: start each round from an empty table
      await ds.query(`UPDATE ${ds.driver.escape(table)} SET ${ds.driver.escape('parent_id')} = NULL`);
      await ds.query(`DELETE FROM ${ds.driver.escape(table)}`);
      const root = await repo.save(repo.create({ name: 'root', parent: null }));
      const a = await repo.save(repo.create({ name: 'A', parent: root }));
      const b = await repo.save(repo.create({ name: 'B', parent: root }));
      const parents = [a, b, root];
      const results = await race(AT_ONCE, (i) => repo.save(repo.create({ name: `n${i}`, parent: parents[i % 3] })));
      failed += results.filter((r) => r.status === 'rejected').length;
      const rows = (await ds.query(`SELECT id, nsleft, nsright FROM ${ds.driver.escape(table)}`)) as Array<Record<string, unknown>>;
      const bounds = rows.map((r) => ({ id: Number(r.id), left: Number(r.nsleft), right: Number(r.nsright) }));
      total += bounds.length;
      anomalies += problems(bounds);
    }
    if (locked && failed) throw new Error(`${failed} inserts failed under @LockedTree`);
    return {
      anomalies: anomalies + failed,
      detail:
        `${ROUNDS} rounds of ${AT_ONCE} inserts at once under A, B and the root: ${anomalies} reused bounds / overlapping intervals` +
        `${failed ? `, ${failed} inserts failed (deadlocks)` : ''} among ${total} nodes`,
    };
  },
};
