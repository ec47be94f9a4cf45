import { expect } from 'chai';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { DataSource } from 'typeorm';
import { installLocking } from '../src';
import { exampleDataSourceOptions, exampleMigrations } from '../examples/db';
import { scenario as nestedSet } from '../examples/scenarios/nested-set';
import { BACKENDS, backendUrl, type BackendName } from './support/backends';

const ROOT = path.join(__dirname, '..');
const EXAMPLE_TABLES = [
  'sites',
  'pages',
  'pages_unlocked',
  'users',
  'orders',
  'legacy_accounts',
  'categories',
  'categories_unlocked',
  'ormlock_scheduled_locks',
];

/** A scratch database of this test on the backend's server: its URL and a drop function. */
async function scratchDatabase(name: BackendName, base: string): Promise<{ url: string; drop(): Promise<void> }> {
  const db = `ormlock_mig_${process.pid}`;
  const url = new URL(base);
  url.pathname = `/${db}`;
  if (name === 'postgres') {
    const { Client } = await import('pg');
    const run = async (sql: string) => {
      const c = new Client({ connectionString: base });
      await c.connect();
      await c.query(sql).finally(() => c.end());
    };
    await run(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    await run(`CREATE DATABASE "${db}"`);
    return { url: url.toString(), drop: () => run(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`) };
  }
  const mysql = await import('mysql2/promise');
  const run = async (sql: string) => {
    const c = await mysql.createConnection({ uri: base });
    await c.query(sql).finally(() => c.end());
  };
  await run(`DROP DATABASE IF EXISTS \`${db}\``);
  await run(`CREATE DATABASE \`${db}\``);
  url.protocol = 'mariadb:'; // picks TypeORM's mariadb driver type (the connection itself is mysql2)
  return { url: url.toString(), drop: () => run(`DROP DATABASE IF EXISTS \`${db}\``) };
}

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [require.resolve('typeorm/cli-ts-node-commonjs.js'), ...args], {
      cwd: ROOT,
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: 'true', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => resolve({ code, output }));
  });
}

async function tablesOf(ds: DataSource): Promise<string[]> {
  const qr = ds.createQueryRunner();
  try {
    const present: string[] = [];
    for (const t of EXAMPLE_TABLES) if (await qr.hasTable(t)) present.push(t);
    return present;
  } finally {
    await qr.release();
  }
}

for (const name of BACKENDS) {
  describe(`migrations of the example schema [${name}]`, function () {
    this.timeout(300_000); // the CLI case starts ts-node twice (run, revert)
    let scratch: { url: string; drop(): Promise<void> } | undefined;

    before(async function () {
      const base = await backendUrl(name);
      if (!base) return this.skip();
      scratch = await scratchDatabase(name, base);
    });
    after(async () => {
      await scratch?.drop();
    });

    it('the migration files are found in timestamp order, helpers excluded', () => {
      const names = exampleMigrations().map((m) => m.name);
      expect(names[0]).to.equal('ExampleSchema1730000000000');
      expect(names).to.not.include('default');
      expect([...names].sort((a, b) => Number(a.match(/\d+$/)![0]) - Number(b.match(/\d+$/)![0]))).to.deep.equal(names);
    });

    it('up: creates the schema the entities describe (no pending schema change); it works with ormlock; down: removes it all', async () => {
      const ds = new DataSource(exampleDataSourceOptions(scratch!.url));
      await ds.initialize();
      try {
        const applied = await ds.runMigrations({ transaction: 'each' });
        expect(applied.map((m) => m.name)).to.deep.equal(exampleMigrations().map((m) => new m().name ?? m.name));
        expect(await tablesOf(ds)).to.deep.equal(EXAMPLE_TABLES);
        const pending = await ds.driver.createSchemaBuilder().log();
        expect(
          pending.upQueries.map((q) => q.query),
          'entities and migrations disagree',
        ).to.deep.equal([]);

        // the schema serves the nested-set example: with the parent lock, no position is given twice
        const handle = await installLocking(ds);
        try {
          const result = await nestedSet.run(ds, { locked: true });
          expect(typeof result === 'number' ? result : result.anomalies).to.equal(0);
        } finally {
          handle.uninstall();
        }

        for (let i = 0; i < applied.length; i++) await ds.undoLastMigration({ transaction: 'each' });
        expect(await tablesOf(ds)).to.deep.equal([]);
        expect(await ds.showMigrations(), 'all pending again').to.equal(true);
      } finally {
        await ds.destroy();
      }
    });

    it('the TypeORM CLI runs and reverts them through migrations/data-source.ts', async () => {
      const env = name === 'postgres' ? { PG_URL: scratch!.url, ORMLOCK_DB: 'postgres' } : { MYSQL_URL: scratch!.url, ORMLOCK_DB: 'mysql' };
      const up = await cli(['migration:run', '-d', 'migrations/data-source.ts'], env);
      expect(up.code, up.output).to.equal(0);
      expect(up.output).to.contain('ExampleSchema1730000000000');

      const ds = new DataSource(exampleDataSourceOptions(scratch!.url));
      await ds.initialize();
      try {
        expect(await tablesOf(ds)).to.deep.equal(EXAMPLE_TABLES);
        // the CLI reverts the last one (one ts-node start each: the rest go through the API, as the
        // test above reverts them all)
        const down = await cli(['migration:revert', '-d', 'migrations/data-source.ts'], env);
        expect(down.code, down.output).to.equal(0);
        expect(down.output).to.contain('ScheduledLocks1780000000000');
        expect(await tablesOf(ds)).to.deep.equal(EXAMPLE_TABLES.filter((t) => t !== 'ormlock_scheduled_locks'));
        for (let i = 1; i < exampleMigrations().length; i++) await ds.undoLastMigration({ transaction: 'each' });
        expect(await tablesOf(ds)).to.deep.equal([]);
      } finally {
        await ds.destroy();
      }
    });
  });
}
