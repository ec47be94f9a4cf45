import { expect } from 'chai';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Client } from 'pg';
import { backendUrl } from './support/backends';

const ROOT = path.join(__dirname, '..');

describe('npm run demo', function () {
  this.timeout(120_000);

  it('runs every scenario without and with its lock against PG_URL, prints the table, drops its database, exits 0', async () => {
    const pgUrl = (await backendUrl('postgres'))!;
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn('npx', ['ts-node', '--transpile-only', 'examples/demo.ts'], {
        cwd: ROOT,
        env: { ...process.env, PG_URL: pgUrl },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('close', (c) => resolve({ code: c, output: out }));
    });
    expect(code, output).to.equal(0);
    expect(output).to.match(/\| scenario\s+\| strategy\s+\| anomalies without lock \| anomalies with lock \| wall time \|/);
    expect(output).to.contain('without the lock…'); // progress lines

    const rows = output
      .split('\n')
      .filter((l) => l.startsWith('| ') && !l.startsWith('| scenario'))
      .map((l) =>
        l
          .split('|')
          .slice(1, -1)
          .map((c) => c.trim()),
      );
    const names = rows.map((r) => r[0]);
    expect(names).to.include.members(['nested-set pages', 'charge_user_for_order']);
    for (const [name, , without, withLock] of rows) {
      if (without === 'skipped') continue;
      expect(withLock, `${name} with its lock`).to.equal('0');
      if (name === 'nested-set pages' || name === 'charge_user_for_order' || name === 'TypeORM nested-set tree') {
        expect(Number(without), `${name} without a lock shows the race`).to.be.greaterThan(0);
      }
    }

    const db = output.match(/database (ormlock_demo_\w+) on/)?.[1];
    expect(db, 'the demo names its database').to.be.a('string');
    const c = new Client({ connectionString: pgUrl });
    await c.connect();
    try {
      const left = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]);
      expect(left.rowCount, 'the demo dropped its database').to.equal(0);
    } finally {
      await c.end();
    }
  });
});
