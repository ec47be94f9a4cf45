'use strict';
/**
 * Private servers for one test process, so that test processes can run at the same time: MariaDB's
 * GET_LOCK names and Redis keys are server-wide, and the test files name them without a per-run
 * prefix (PostgreSQL needs none: each test process has its own database, and advisory locks are
 * per database). Starts a MariaDB (same binary as the shared server, its own data directory) and
 * three Redis nodes on free loopback ports, and gives the environment that points a test process
 * at them (MYSQL_URL, REDIS_URLS), plus its own port ranges for the servers tests start themselves
 * (PgBouncer, a second PostgreSQL, Redlock nodes).
 *
 * Used by scripts/test-matrix.js; `available()` says why it cannot be used (then runs are serial).
 */
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const MARIADBD = process.env.ORMLOCK_MARIADBD ?? '/usr/sbin/mariadbd';
const SHARED_MYSQL = 'mysql://root@127.0.0.1:3306/test';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function portFree(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function freePort(from) {
  for (let port = from; port < from + 500; port++) if (await portFree(port)) return port;
  throw new Error(`no free port from ${from}`);
}

/** A MariaDB's version (or another server variable), or null when it does not answer. */
async function versionAt(uri, variable = 'VERSION()') {
  try {
    const mysql = require('mysql2/promise');
    const c = await mysql.createConnection({ uri, connectTimeout: 3000 });
    try {
      const [[row]] = await c.query(`SELECT ${variable} AS v`);
      return row.v;
    } finally {
      await c.end();
    }
  } catch {
    return null;
  }
}

/**
 * Why private servers cannot be used here (a string), or undefined. They stand in for the shared
 * ones only when those are the local defaults (MYSQL_URL unset) and the private MariaDB is the same
 * server version, so no run tests another backend than `npm test` would.
 */
async function unavailable() {
  if (process.env.ORMLOCK_PRIVATE_SERVERS === '0') return 'ORMLOCK_PRIVATE_SERVERS=0';
  if (process.env.MYSQL_URL) return 'MYSQL_URL is set';
  if (!fs.existsSync(MARIADBD)) return `no ${MARIADBD}`;
  if (spawnSync('mariadb-install-db', ['--help']).error) return 'no mariadb-install-db';
  if (spawnSync('redis-server', ['--version']).error) return 'no redis-server';
  const shared = await versionAt(SHARED_MYSQL);
  if (!shared) return `the shared MariaDB (${SHARED_MYSQL}) does not answer`;
  const mine = spawnSync(MARIADBD, ['--version'], { encoding: 'utf8' }).stdout ?? '';
  if (!mine.includes(shared.split('-')[0])) return `${MARIADBD} (${mine.trim()}) is not the shared server's version (${shared})`;
  return undefined;
}

/** A Redis node's answer to CONFIG GET dir (raw RESP text). */
function redisDir(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const done = () => (socket.destroy(), resolve(data));
    socket.setTimeout(2000, done);
    socket.once('error', done);
    socket.once('connect', () => socket.write('CONFIG GET dir\r\n'));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      if (/^\*2\r\n\$\d+\r\ndir\r\n\$\d+\r\n.*\r\n/s.test(data) || data.startsWith('-')) done();
    });
  });
}

async function waitFor(what, probe, child, ms = 120_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await probe()) return;
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    if (Date.now() > end) throw new Error(`${what} did not answer within ${ms} ms`);
    await sleep(50);
  }
}

/**
 * Starts the servers of run `index` (≥ 1; run 0 uses the shared ones). Resolves { env, stop }:
 * `env` is what the run's environment adds, `stop()` ends the servers and removes their files.
 */
async function startPrivateServers(index) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ormlock-run${index}-`));
  const children = [];
  const stop = async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', resolve);
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
          }),
      ),
    );
    if (process.env.ORMLOCK_PRIVATE_KEEP) console.log(`=== private servers' files kept in ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  };
  const killNow = () => {
    children.forEach((c) => c.kill('SIGKILL'));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killNow);
  try {
    const asRoot = process.getuid?.() === 0 ? ['--user=root'] : [];
    const install = spawnSync(
      'mariadb-install-db',
      ['--no-defaults', `--datadir=${dir}/mariadb`, '--auth-root-authentication-method=normal', '--skip-test-db', ...asRoot],
      { encoding: 'utf8' },
    );
    if (install.status !== 0) throw new Error(`mariadb-install-db failed: ${install.stderr || install.stdout}`);
    const mysqlPort = await freePort(3310 + index * 10);
    fs.writeFileSync(path.join(dir, 'init.sql'), 'CREATE DATABASE IF NOT EXISTS test;\n');
    const mariadb = spawn(
      MARIADBD,
      [
        '--no-defaults',
        `--datadir=${dir}/mariadb`,
        `--port=${mysqlPort}`,
        '--bind-address=127.0.0.1',
        `--socket=${dir}/mariadb.sock`,
        `--pid-file=${dir}/mariadb.pid`,
        `--init-file=${dir}/init.sql`,
        '--character-set-server=utf8mb4',
        '--collation-server=utf8mb4_general_ci',
        '--skip-name-resolve',
        '--innodb-buffer-pool-size=64M',
        ...asRoot,
      ],
      { stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'mariadb.log'), 'w')] },
    );
    children.push(mariadb);
    const mysqlUrl = `mysql://root@127.0.0.1:${mysqlPort}/test`;
    const redisPorts = [];
    for (let i = 0, from = 6390 + index * 10; i < 3; i++) {
      const port = await freePort(from);
      from = port + 1;
      const redis = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'],
        {
          cwd: dir,
          stdio: 'ignore',
        },
      );
      children.push(redis);
      redisPorts.push(port);
    }
    await Promise.all(redisPorts.map((port, i) => waitFor(`redis-server :${port}`, async () => !(await portFree(port)), children[i + 1])));
    await waitFor(`mariadbd :${mysqlPort} (log: ${dir}/mariadb.log)`, async () => (await versionAt(mysqlUrl)) !== null, mariadb);
    // the server answering is this one, not another runner's that took the port first (ours then failed to bind)
    const datadir = await versionAt(mysqlUrl, '@@datadir');
    if (path.resolve(String(datadir)) !== fs.realpathSync(path.join(dir, 'mariadb'))) throw new Error(`port ${mysqlPort} is another MariaDB's (${datadir})`);
    await Promise.all(
      redisPorts.map(async (port) => {
        const answer = await redisDir(port);
        if (!answer.includes(fs.realpathSync(dir))) throw new Error(`port ${port} is another Redis's (${answer})`);
      }),
    );
    return {
      env: {
        MYSQL_URL: mysqlUrl,
        REDIS_URLS: redisPorts.map((p) => `redis://127.0.0.1:${p}`).join(','),
        ORMLOCK_PGBOUNCER_PORT: String(56432 + index * 100),
        ORMLOCK_PG2_PORT: String(55432 + index * 100),
        REDLOCK_TEST_PORT: String(6500 + index * 50),
      },
      stop: async () => {
        process.removeListener('exit', killNow);
        await stop();
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

module.exports = { startPrivateServers, unavailable };
