import { expect } from 'chai';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { BACKENDS, dataSourceOptions } from './support/backends';

const ROOT = path.join(__dirname, '..');

/**
 * examples/nestjs/scheduled.ts: three NestJS instances run an every-second `@Cron` job; with
 * `@ScheduledLock` each second runs once, without it (the control) three times. The example
 * prints the table and exits 0 only when every second ran the locked job exactly once.
 */
for (const backend of BACKENDS) {
  describe(`examples/nestjs/scheduled.ts (@Cron + @ScheduledLock) [${backend}]`, function () {
    this.timeout(240_000);

    it('every second runs the locked job once and the control on every instance', async function () {
      const options = await dataSourceOptions(backend, []);
      if (!options) return this.skip();
      let url = (options as { url: string }).url;
      if (backend === 'mariadb') url = url.replace(/^mysql:/, 'mariadb:');
      const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
        const child = spawn(process.execPath, [require.resolve('ts-node/dist/bin.js'), '--transpile-only', 'examples/nestjs/scheduled.ts', '--seconds', '3'], {
          cwd: ROOT,
          env: { ...process.env, DATABASE_URL: url },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        child.on('close', (c) => resolve({ code: c, output: out }));
      });
      expect(code, output).to.equal(0);
      const rows = output
        .split('\n')
        .filter((l) => /^\| \d\d:\d\d:\d\d /.test(l))
        .map((l) =>
          l
            .split('|')
            .slice(2, -1)
            .map((c) => Number(c.trim())),
        );
      expect(rows, output).to.have.length(3);
      for (const [locked, control] of rows) {
        expect(locked, output).to.equal(1);
        expect(control, output).to.equal(3);
      }
    });
  });
}
