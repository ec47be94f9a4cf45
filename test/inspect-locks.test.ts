import { expect } from 'chai';
import { execFile, spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { createInterface } from 'node:readline';
import path from 'node:path';
import type { QueryRunner } from 'typeorm';
import { LockConfigError, currentManager, inspectLocks, lock, transaction, withAdvisoryLock, type LockWait } from '../src';
import { runInFrame } from '../src/context/store';
import { advisoryComment, parseAdvisoryComment } from '../src/dialects/advisory-comment';
import { getLockName } from '../src/dialects/mysql/inspect';
import { main } from '../src/observe/cli';
import { formatLockTable } from '../src/observe/format';
import { race } from '../src/testing';
import { InspectAccount } from './fixtures/inspect-account';
import { describeEachBackend, sleep } from './support/suite';
import { deferred } from './support/outside';

/** This process's namespace: GET_LOCK names are server-wide, and other test runs share the MariaDB server. */
const NS = `inspect-${process.env.ORMLOCK_TEST_DB}`;
const ROOT = path.resolve(__dirname, '..');
const KEY = 'S3Worker-Lock';
/** User input at its worst: comment ends and starts, placeholders, quotes, backslashes, control and non-ASCII characters. */
const HOSTILE = `x*/ ; DROP TABLE inspect_account; -- ?? $1 :p '"\\ /* \u0000\u001b é 🔒 */`;

function outside<T>(fn: () => Promise<T>): Promise<T> {
  return runInFrame({ txs: new Map(), values: new Map() }, fn);
}

/**
 * Polls `probe` until it returns a value; fails the test (it never hangs it) after `ms`. Every
 * 250 ms: MariaDB refreshes InnoDB's lock tables only when nobody read them in the last 0.1 s.
 */
async function until<T>(probe: () => Promise<T | undefined>, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not seen within ${ms} ms`);
    await sleep(250);
  }
}

/** `ormlock locks --url … --json`, as a child process running the command's source. */
function cli(url: string): Promise<LockWait[]> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(ROOT, 'bin/ormlock.js'), 'locks', '--url', url, '--json'],
      { cwd: ROOT, env: { ...process.env, ORMLOCK_CLI_FROM_SOURCE: '1' }, timeout: 60_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout))),
    );
  });
}

/** `ormlock locks --url … --json --watch`: the first `n` snapshots, then SIGINT; resolves with them and the exit code. */
function watch(url: string, n: number): Promise<{ snapshots: LockWait[][]; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/ormlock.js'), 'locks', '--url', url, '--json', '--watch', '--interval', '250'], {
      cwd: ROOT,
      env: { ...process.env, ORMLOCK_CLI_FROM_SOURCE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const snapshots: LockWait[][] = [];
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    createInterface({ input: child.stdout }).on('line', (line) => {
      snapshots.push(JSON.parse(line));
      if (snapshots.length === n) child.kill('SIGINT');
    });
    child.on('error', reject);
    child.on('close', (code) => (snapshots.length >= n ? resolve({ snapshots, code }) : reject(new Error(`watch exited ${code}: ${stderr}`))));
  });
}

async function runMain(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  const code = await main(argv, out, err);
  return { code, out: o, err: e };
}

describe('the ormlock command (no database)', () => {
  it('exits 2 with the usage on bad arguments, naming what is wrong', async () => {
    const saved = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL;
    try {
      expect(await runMain([]))
        .to.include({ code: 2 })
        .and.have.property('err')
        .that.match(/usage: ormlock locks --url/);
      expect((await runMain(['lock'])).err).to.match(/unknown command 'lock'/);
      expect((await runMain(['locks'])).err).to.match(/--url is required \(or set DATABASE_URL\)/);
      expect((await runMain(['locks', '--url', 'redis://x'])).err).to.match(/--url: expected a postgres:\/\/.*got 'redis:\/\/…'/);
      expect((await runMain(['locks', '--url', 'postgres://x', '--interval', '10'])).err).to.match(/--interval: expected whole milliseconds ≥ 250/);
      expect((await runMain(['locks', '--url', 'postgres://x', '--jsn'])).err).to.match(/unknown option '--jsn'/);
    } finally {
      if (saved !== undefined) process.env.DATABASE_URL = saved;
    }
  });
});

describe('advisory key comments (no database)', () => {
  it('round-trip any key, and leave nothing of it that could end the comment, open a nested one or be a placeholder', () => {
    for (const key of [KEY, HOSTILE, 'a b=c', '["charge",5]', '\uD800 lone surrogate']) {
      const comment = advisoryComment({ display: key, namespace: 'shop' });
      expect(comment).to.match(/^\/\* ormlock key=[A-Za-z0-9_.:~,@+%-]* ns=shop \*\/ $/);
      expect(comment.slice(2, -4)).not.to.match(/\*\/|\/\*|[?$'"\\\u0000-\u001f]/);
      const parsed = parseAdvisoryComment(`${comment}SELECT GET_LOCK(?, ?)`);
      expect(parsed).to.deep.equal({ key: key.replace('\uD800', '\uFFFD'), namespace: 'shop' });
    }
  });

  it('cuts long keys and says so; no comment without a key', () => {
    const parsed = parseAdvisoryComment(advisoryComment({ display: 'k'.repeat(1000), namespace: '' }));
    expect(parsed?.cut).to.equal(true);
    expect(parsed?.key).to.equal('k'.repeat(160));
    expect(advisoryComment(undefined)).to.equal('');
    expect(parseAdvisoryComment('SELECT pg_advisory_lock($1::bigint)')).to.equal(undefined);
  });

  it('reads GET_LOCK names back as mysql2 escaped them', () => {
    expect(getLockName(`/* ormlock key=a */ SELECT GET_LOCK('ns:it\\'s \\\\ here', 31536000) AS acquired`)).to.equal("ns:it's \\ here");
    expect(getLockName('SELECT 1')).to.equal(undefined);
  });

  it('bad input is a LockConfigError naming the argument', async () => {
    let error: unknown;
    await inspectLocks('redis://localhost').catch((e) => (error = e));
    expect(error).to.be.instanceOf(LockConfigError);
    expect((error as Error).message).to.match(/inspectLocks: the URL: expected a postgres:\/\/.*got 'redis:\/\/…'/);
    error = undefined;
    await inspectLocks({} as any).catch((e) => (error = e));
    expect((error as Error).message).to.match(/inspectLocks: expected an initialized TypeORM DataSource/);
  });
});

describeEachBackend(
  'inspectLocks and `ormlock locks`',
  [InspectAccount],
  (env) => {
    const url = () => String((env.ds.options as { url: string }).url);
    const holderId = async () => Number((await currentManager().query(env.handle.dialect.connectionIdSql))[0].connectionId);

    /**
     * One transaction holds a row lock and a session advisory lock on `key`; two callers start on a
     * barrier, one waiting for each. Returns when the inspector sees both waits.
     */
    async function contended(key: string) {
      const repo = env.ds.getRepository(InspectAccount);
      const { id } = await repo.save(repo.create({ balance: 0 }));
      const held = deferred<number>();
      const release = deferred();
      const holder = outside(() =>
        transaction(async () => {
          await lock(await currentManager().findOneByOrFail(InspectAccount, { id }));
          await withAdvisoryLock(
            key,
            async () => {
              held.resolve(await holderId());
              await release.promise;
            },
            { scope: 'session' },
          );
        }),
      );
      const holderPid = await held.promise;
      const waiters = race(2, (i) =>
        outside(() =>
          i === 0
            ? transaction(async () => {
                await lock(await currentManager().findOneByOrFail(InspectAccount, { id }));
                return 'row';
              })
            : withAdvisoryLock(key, async () => 'advisory', { scope: 'session' }),
        ),
      );
      const waits = await until(async () => {
        const w = await inspectLocks(env.ds);
        return w.length >= 2 ? w : undefined;
      }, 'both waits');
      return {
        holderPid,
        waits,
        async finish() {
          release.resolve();
          await holder;
          return waiters;
        },
      };
    }

    function expectBothWaits(waits: LockWait[], holderPid: number, key: string) {
      expect(waits).to.have.length(2);
      const row = waits.find((w) => w.lock.kind === 'row')!;
      const adv = waits.find((w) => w.lock.kind === 'advisory')!;
      expect(row, 'the row lock wait').to.not.equal(undefined);
      expect(adv, 'the advisory lock wait').to.not.equal(undefined);
      expect(row.blocking.pid).to.equal(holderPid);
      expect(adv.blocking.pid).to.equal(holderPid);
      expect(row.blocking.state).to.equal('idle in transaction');
      expect(row.lock).to.include({ table: 'inspect_account', mode: 'write' });
      expect(row.waiting.query).to.match(/FOR UPDATE/i);
      expect(adv.lock).to.include({ key, namespace: NS, mode: 'exclusive' });
      expect(adv.lock.id).to.be.a('string').and.not.equal('');
      const waiting = new Set([row.waiting.pid, adv.waiting.pid, holderPid]);
      expect(waiting.size, 'three different connections').to.equal(3);
      for (const w of waits) expect(w.waiting.waitedMs).to.be.a('number').and.at.least(0);
    }

    it(`lists a row lock wait and an advisory wait on '${KEY}' with the holder's connection id, the table and the key (inspectLocks, the pool, and the command)`, async function () {
      this.timeout(120_000);
      const c = await contended(KEY);
      try {
        expectBothWaits(c.waits, c.holderPid, KEY);
        expectBothWaits(await inspectLocks(env.ds, { via: 'pool' }), c.holderPid, KEY);
        expectBothWaits(await cli(url()), c.holderPid, KEY);
        const watched = await watch(url(), 2);
        expect(watched.code, 'exits 0 on SIGINT').to.equal(0);
        for (const snapshot of watched.snapshots) expectBothWaits(snapshot, c.holderPid, KEY);
        const table = formatLockTable(c.waits);
        expect(table).to.include(`${NS}:"${KEY}"`).and.include('inspect_account');
      } finally {
        const results = await c.finish();
        expect(results.map((r) => (r.status === 'fulfilled' ? r.value : r.reason))).to.deep.equal(['row', 'advisory']);
      }
      // control: once the holder is gone there is no wait to show
      expect(await inspectLocks(env.ds)).to.deep.equal([]);
    });

    it('shows a hostile key exactly as written, and the statement stayed one harmless lock', async function () {
      this.timeout(60_000);
      const c = await contended(HOSTILE);
      try {
        expectBothWaits(c.waits, c.holderPid, HOSTILE);
      } finally {
        await c.finish();
      }
      expect(await env.ds.getRepository(InspectAccount).count()).to.be.greaterThan(0);
    });

    it("control: an advisory lock taken without ormlock shows its id but no key (keys come only from ormlock's comment)", async function () {
      this.timeout(60_000);
      const pg = env.name === 'postgres';
      const name = `${NS}:raw`;
      const sql = pg ? 'SELECT pg_advisory_lock(42)' : `SELECT GET_LOCK('${name}', 60)`;
      const a: QueryRunner = env.ds.createQueryRunner();
      const b: QueryRunner = env.ds.createQueryRunner();
      try {
        await a.query(sql);
        const holderPid = Number((await a.query(env.handle.dialect.connectionIdSql))[0].connectionId);
        const waiting = b.query(sql);
        const w = await until(async () => (await inspectLocks(env.ds)).find((x) => x.lock.kind === 'advisory'), 'the raw wait');
        expect(w.lock.kind).to.equal('advisory');
        expect(w.lock.key).to.equal(undefined);
        expect(w.lock.id).to.equal(pg ? '42' : name);
        expect(w.blocking.pid).to.equal(holderPid);
        await a.query(pg ? 'SELECT pg_advisory_unlock(42)' : `SELECT RELEASE_LOCK('${name}')`);
        await waiting;
        await b.query(pg ? 'SELECT pg_advisory_unlock(42)' : `SELECT RELEASE_LOCK('${name}')`);
      } finally {
        await a.release();
        await b.release();
      }
    });
  },
  { install: { namespace: NS } },
);
