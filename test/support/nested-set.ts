/* The nested-set check shared by the tree tests. */

/** A node's bounds; with `id` and `parentId`, its place in the tree is checked too. */
export interface NsRow {
  id?: number;
  parentId?: number | null;
  left: number;
  right: number;
}

/** Every problem of a nested set: overlapping intervals, reused bounds, a node outside its parent (when rows name their parents), gaps. */
export function nestedSetProblems(rows: NsRow[]): string[] {
  const problems: string[] = [];
  const bounds = new Map<number, number>();
  for (const r of rows) for (const b of [r.left, r.right]) bounds.set(b, (bounds.get(b) ?? 0) + 1);
  for (const [b, n] of bounds) if (n > 1) problems.push(`bound ${b} used ${n} times`);
  for (let i = 0; i < rows.length; i++) {
    const a = rows[i];
    if (!(a.left < a.right)) problems.push(`node ${a.id ?? i}: [${a.left},${a.right}] is empty`);
    for (let j = i + 1; j < rows.length; j++) {
      const b = rows[j];
      const disjoint = a.right < b.left || b.right < a.left;
      const nested = (a.left < b.left && b.right < a.right) || (b.left < a.left && a.right < b.right);
      if (!disjoint && !nested) problems.push(`[${a.left},${a.right}] overlaps [${b.left},${b.right}]`);
    }
  }
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const r of rows) {
    if (r.parentId === undefined) continue;
    // the parent is the smallest interval around the node
    const around = rows.filter((o) => o.left < r.left && r.right < o.right).sort((x, y) => x.right - x.left - (y.right - y.left))[0];
    if ((around?.id ?? null) !== r.parentId) problems.push(`node ${r.id}: parent ${r.parentId} but nested in ${around?.id ?? 'nothing'}`);
    if (r.parentId !== null && !byId.has(r.parentId)) problems.push(`node ${r.id}: parent ${r.parentId} missing`);
  }
  const sorted = [...bounds.keys()].sort((x, y) => x - y);
  if (problems.length === 0 && sorted.some((b, i) => b !== i + 1)) problems.push(`bounds are not 1..${2 * rows.length}`);
  return problems;
}
