/**
 * `@LockedTree` insert vs the same insert unlocked, on TypeORM's own trees (nested set and
 * closure table), PostgreSQL and MariaDB, 1 and 8 workers. Each operation is one `save()` of a
 * new node under one of 8 parents (children of one root). Before each cell the table is emptied
 * and re-seeded, so every cell starts from the same tree (a nested-set insert shifts the
 * whole table, so its cost grows with it). Cells are interleaved (plain, locked, plain, locked …)
 * so that machine noise hits both alike. Reported: statements per insert (counted by a query
 * logger), ops/s, p50/p99, failed inserts and — for the unlocked nested set — the corrupted
 * bounds it left.
 *
 * Run alone: npx ts-node --transpile-only bench/locked-tree.bench.ts [--quick]
 */
import 'reflect-metadata';
import { Column, Entity, PrimaryGeneratedColumn, Tree, TreeChildren, TreeParent, type DataSource, type Logger } from 'typeorm';
import { installLocking, LockedTree } from '../src';
import { BACKENDS, createDataSource, teardownBackends, type BackendName } from '../test/support/backends';
import { runCell, type CellResult } from './harness';

@LockedTree()
@Tree('nested-set')
@Entity('bench_tree_ns')
class LockedNs {
  @PrimaryGeneratedColumn() id!: number;
  @Column() name!: string;
  @TreeChildren() children?: LockedNs[];
  @TreeParent() parent?: LockedNs | null;
}

@Tree('nested-set')
@Entity('bench_tree_ns_plain')
class PlainNs {
  @PrimaryGeneratedColumn() id!: number;
  @Column() name!: string;
  @TreeChildren() children?: PlainNs[];
  @TreeParent() parent?: PlainNs | null;
}

@LockedTree()
@Tree('closure-table')
@Entity('bench_tree_ct')
class LockedCt {
  @PrimaryGeneratedColumn() id!: number;
  @Column() name!: string;
  @TreeChildren() children?: LockedCt[];
  @TreeParent() parent?: LockedCt | null;
}

@Tree('closure-table')
@Entity('bench_tree_ct_plain')
class PlainCt {
  @PrimaryGeneratedColumn() id!: number;
  @Column() name!: string;
  @TreeChildren() children?: PlainCt[];
  @TreeParent() parent?: PlainCt | null;
}

type Node = { id: number; name: string; parent?: Node | null };
type Cls = new () => Node;

class Counter implements Logger {
  on = false;
  n = 0;
  logQuery() {
    if (this.on) this.n += 1;
  }
  logQueryError() {}
  logQuerySlow() {}
  logSchemaBuild() {}
  logMigration() {}
  log() {}
}

const quick = process.argv.includes('--quick');
const DURATION_MS = quick ? 800 : 2_500;
const ROUNDS = quick ? 1 : 2;
const PARENTS = 8;

async function reset(ds: DataSource, cls: Cls): Promise<Node[]> {
  const meta = ds.getMetadata(cls);
  const tables = [meta.closureJunctionTable?.tablePath, meta.tablePath].filter(Boolean).map((t) => ds.driver.escape(t!));
  if (ds.options.type === 'postgres') await ds.query(`TRUNCATE ${tables.join(', ')} RESTART IDENTITY`);
  else {
    const qr = ds.createQueryRunner();
    try {
      await qr.query('SET FOREIGN_KEY_CHECKS = 0');
      for (const t of tables) await qr.query(`TRUNCATE ${t}`);
      await qr.query('SET FOREIGN_KEY_CHECKS = 1');
    } finally {
      await qr.release();
    }
  }
  const repo = ds.getRepository<Node>(cls);
  const root = await repo.save(repo.create({ name: 'root', parent: null }));
  const parents: Node[] = [];
  for (let i = 0; i < PARENTS; i++) parents.push(await repo.save(repo.create({ name: `p${i}`, parent: root })));
  return parents;
}

/** Reused bounds and overlapping intervals of a nested set. */
async function nsProblems(ds: DataSource, cls: Cls): Promise<number> {
  const rows = (await ds.query(`SELECT nsleft, nsright FROM ${ds.driver.escape(ds.getMetadata(cls).tablePath)}`)) as Array<Record<string, unknown>>;
  const iv = rows.map((r) => [Number(r.nsleft), Number(r.nsright)] as const);
  const seen = new Set<number>();
  let n = 0;
  for (const [l, r] of iv) for (const b of [l, r]) seen.has(b) ? (n += 1) : seen.add(b);
  const sorted = [...iv].sort((a, b) => a[0] - b[0]);
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length && sorted[j][0] <= sorted[i][1]; j++) if (sorted[j][1] > sorted[i][1]) n += 1;
  }
  return n;
}

interface Row {
  backend: BackendName;
  tree: string;
  variant: 'unlocked' | '@LockedTree';
  workers: number;
  statements: number;
  cells: CellResult[];
  problems: number;
}

async function benchBackend(backend: BackendName, rows: Row[]): Promise<void> {
  const counter = new Counter();
  const ds = await createDataSource(backend, [LockedNs, PlainNs, LockedCt, PlainCt], { logger: counter, logging: true, poolSize: 20 });
  if (!ds) {
    console.log(`[${backend}] not available: skipped`);
    return;
  }
  const handle = await installLocking(ds);
  try {
    for (const [tree, plain, locked] of [
      ['nested set', PlainNs, LockedNs],
      ['closure table', PlainCt, LockedCt],
    ] as Array<[string, Cls, Cls]>) {
      for (const workers of [1, 8]) {
        const pair: Row[] = [];
        for (const [variant, cls] of [
          ['unlocked', plain],
          ['@LockedTree', locked],
        ] as Array<[Row['variant'], Cls]>) {
          // statements of one insert (the same tree, the same parent)
          const parents = await reset(ds, cls);
          const repo = ds.getRepository<Node>(cls);
          counter.n = 0;
          counter.on = true;
          await repo.save(repo.create({ name: 'counted', parent: parents[0] }));
          counter.on = false;
          const row: Row = { backend, tree, variant, workers, statements: counter.n, cells: [], problems: 0 };
          pair.push(row);
          rows.push(row);
        }
        for (let round = 0; round < ROUNDS; round++) {
          for (const [k, cls] of [plain, locked].entries()) {
            const parents = await reset(ds, cls);
            const repo = ds.getRepository<Node>(cls);
            let i = 0;
            const cell = await runCell(async (w) => repo.save(repo.create({ name: `w${w}-${i++}`, parent: parents[(w + i) % PARENTS] })), {
              workers,
              durationMs: DURATION_MS,
            });
            pair[k].cells.push(cell);
            if (tree === 'nested set') pair[k].problems += await nsProblems(ds, cls);
          }
        }
      }
    }
  } finally {
    handle.uninstall();
    await ds.destroy();
  }
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const backend of BACKENDS) await benchBackend(backend, rows);
  console.log(
    '\n| backend | tree | variant | workers | statements / insert | ops/s | p50 ms | p99 ms | failed inserts | corrupted bounds | ops/s vs unlocked |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const row of rows) {
    const ops = row.cells.reduce((s, c) => s + c.ops, 0);
    const ms = row.cells.reduce((s, c) => s + c.elapsedMs, 0);
    const opsPerSec = (ops * 1000) / ms;
    const lat = row.cells.flatMap((c) => c.latencies).sort((a, b) => a - b);
    const pct = (q: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] : NaN);
    const errors = row.cells.reduce((s, c) => s + c.errors, 0);
    const base = rows.find((r) => r.backend === row.backend && r.tree === row.tree && r.workers === row.workers && r.variant === 'unlocked')!;
    const baseOps = (base.cells.reduce((s, c) => s + c.ops, 0) * 1000) / base.cells.reduce((s, c) => s + c.elapsedMs, 0);
    const firstError = row.cells.find((c) => c.firstError)?.firstError;
    console.log(
      `| ${row.backend} | ${row.tree} | ${row.variant} | ${row.workers} | ${row.statements} | ${fmt(opsPerSec)} | ${fmt(pct(0.5), 2)} | ${fmt(pct(0.99), 2)} | ` +
        `${errors}${firstError ? ` (${firstError.slice(0, 40)})` : ''} | ${row.tree === 'nested set' ? row.problems : '—'} | ${fmt(opsPerSec / baseOps, 2)}× |`,
    );
  }
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => teardownBackends());
