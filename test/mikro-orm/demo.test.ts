import { expect } from 'chai';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { backendUrl } from '../support/backends';

const ROOT = path.join(__dirname, '..', '..');

describe('npm run demo -- --orm mikro-orm', function () {
  this.timeout(120_000);

  it('runs the scenarios on MikroORM without and with their locks: every "with lock" cell 0, the races show without', async () => {
    const pgUrl = (await backendUrl('postgres'))!;
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn('npx', ['ts-node', '--transpile-only', 'examples/demo.ts', '--orm', 'mikro-orm'], {
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
    expect(output).to.contain('MikroORM');
    const rows = output
      .split('\n')
      .filter((l) => l.startsWith('| ') && !l.startsWith('| scenario'))
      .map((l) =>
        l
          .split('|')
          .slice(1, -1)
          .map((c) => c.trim()),
      );
    expect(rows.map((r) => r[0])).to.include.members(['nested-set pages', 'charge_user_for_order', 'optimistic counter', 'S3Worker']);
    for (const [name, , without, withLock] of rows) {
      if (without === 'skipped') continue;
      expect(withLock, `${name} with its lock`).to.equal('0');
      if (name !== 'Redlock S3Worker') expect(Number(without), `${name} without a lock shows the race`).to.be.greaterThan(0);
    }
  });
});
