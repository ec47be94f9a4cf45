import { expect } from 'chai';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { BACKENDS, dataSourceOptions } from './support/backends';
import { requireRedis } from './support/redis-answers';
import { redisUrls } from './support/redis-servers';

const ROOT = path.join(__dirname, '..');

/**
 * `npm run example:nestjs -- --demo` (examples/nestjs): the copyable app starts, serves 20
 * concurrent charges over HTTP per lock, prints its table and exits 0 — without a lock charges
 * are lost, with each lock none is (PostgreSQL and MariaDB, the test process's own database).
 */
for (const backend of BACKENDS) {
  describe(`npm run example:nestjs -- --demo [${backend}]`, function () {
    this.timeout(120_000);

    it('prints the table: charges lost without a lock, none with a row lock, an advisory lock or a lease', async function () {
      const options = await dataSourceOptions(backend, []);
      if (!options) return this.skip();
      await requireRedis(this, `the NestJS example's lock=lease [${backend}]`);
      let url = (options as { url: string }).url;
      if (backend === 'mariadb') url = url.replace(/^mysql:/, 'mariadb:');
      const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
        const child = spawn(process.execPath, [require.resolve('ts-node/dist/bin.js'), '--transpile-only', 'examples/nestjs/main.ts', '--demo'], {
          cwd: ROOT,
          env: { ...process.env, DATABASE_URL: url, REDIS_URL: redisUrls()[0] },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        child.on('close', (c) => resolve({ code: c, output: out }));
      });
      expect(code, output).to.equal(0);
      const rows = Object.fromEntries(
        output
          .split('\n')
          .filter((l) => /^\| (none|row|advisory|lease) /.test(l))
          .map((l) =>
            l
              .split('|')
              .slice(1, -1)
              .map((c) => c.trim()),
          )
          .map(([lock, , credits, lost, failed]) => [lock, { credits: Number(credits), lost: Number(lost), failed: Number(failed) }]),
      );
      expect(Object.keys(rows), output).to.deep.equal(['none', 'row', 'advisory', 'lease']);
      expect(rows.none.lost, 'without a lock charges are lost').to.be.greaterThan(0);
      for (const lock of ['row', 'advisory', 'lease']) expect(rows[lock], lock).to.deep.equal({ credits: 800, lost: 0, failed: 0 });
    });
  });
}
