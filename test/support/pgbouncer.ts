/**
 * A real PgBouncer (Debian's `pgbouncer` package, /usr/sbin/pgbouncer) for the production set-up
 * tests: an ini in a directory under /tmp owned by the `postgres` user (PgBouncer refuses to run
 * as root), listening on a spare loopback port, `pool_mode = transaction` unless told otherwise,
 * `auth_type = trust`. `stop()` ends the process and removes the directory.
 *
 * The admin console (`admin()`) is the `pgbouncer` database, for SHOW SERVERS / SHOW POOLS /
 * RECONNECT.
 *
 * The check at the end of each PgBouncer file, shared: `advisoryLocksOn` (on the server, over a
 * direct connection), `everyServer` (each of the pool's server connections pinned at once and
 * asked for its lock_timeout, advisory locks and settings a session changed), `serverPids`,
 * `endServers` (for a control that leaves something behind).
 */
import { ChildProcess, spawn } from 'child_process';
import fs from 'fs';
import path from 'path';
import { expect } from 'chai';
import { Client } from 'pg';
import { serverDirectory, serverUser, sparePort } from './postgres-user';
import { sleep } from './suite';

export const PGBOUNCER_BIN = process.env.ORMLOCK_PGBOUNCER_BIN ?? '/usr/sbin/pgbouncer';

export interface PgBouncerOptions {
  /** Database name as clients use it → the server's `postgres://` URL (host, port, dbname taken from it). */
  databases: Record<string, string>;
  poolMode?: 'transaction' | 'session' | 'statement';
  /** Server connections per database/user pair (default 8: fewer than the racing callers, so they share). */
  poolSize?: number;
}

export interface PgBouncer {
  readonly port: number;
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url(database: string): string;
  /** A connected client on the admin console (the caller ends it). */
  admin(): Promise<Client>;
  stop(): Promise<void>;
}

/** Why PgBouncer cannot start here, or undefined when it can. */
export function pgBouncerUnavailable(): string | undefined {
  if (!fs.existsSync(PGBOUNCER_BIN)) return `${PGBOUNCER_BIN} is missing (Debian: apt-get install -y pgbouncer; .ci/run installs it)`;
  const user = serverUser();
  return typeof user === 'string' ? user : undefined;
}

/**
 * Starts a PgBouncer of this process. Test processes run at the same time (npm test's two, the
 * version matrix's): two may find the same port free, and then one bouncer fails to listen while its
 * owner talks to the other's. So the search starts at a port of this process's own, the bouncer
 * that answers must show this one's pidfile, and otherwise it is started again on another port.
 */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  let from = Number(process.env.ORMLOCK_PGBOUNCER_PORT ?? 56432 + (process.pid % 400) * 5);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOn(await sparePort(from), options);
    } catch (error) {
      if (!(error instanceof NotOurs) || attempt >= 5) throw error;
      from = error.port + 1 + Math.floor(Math.random() * 50);
    }
  }
}

/** The bouncer answering on `port` is another process's (ours could not listen there). */
class NotOurs extends Error {
  constructor(readonly port: number) {
    super(`the pgbouncer answering on port ${port} is not the one this process started`);
  }
}

async function startOn(port: number, options: PgBouncerOptions): Promise<PgBouncer> {
  const user = serverUser();
  if (typeof user === 'string') throw new Error(user);
  const dir = serverDirectory(user, 'ormlock-pgbouncer-');
  const databases = Object.entries(options.databases).map(([name, url]) => {
    const u = new URL(url);
    return `${name} = host=${u.hostname} port=${u.port || 5432} dbname=${decodeURIComponent(u.pathname.slice(1))} user=${decodeURIComponent(u.username || 'postgres')}`;
  });
  const ini = [
    '[databases]',
    ...databases,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'users.txt')}`,
    `pool_mode = ${options.poolMode ?? 'transaction'}`,
    `default_pool_size = ${options.poolSize ?? 8}`,
    'max_client_conn = 500',
    'ignore_startup_parameters = extra_float_digits,options',
    'admin_users = postgres',
    `logfile = ${path.join(dir, 'pgbouncer.log')}`,
    `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
    '',
  ].join('\n');
  const iniPath = path.join(dir, 'pgbouncer.ini');
  fs.writeFileSync(iniPath, ini, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'users.txt'), '"postgres" ""\n', { mode: 0o644 });
  if (user.uid !== undefined) for (const f of ['pgbouncer.ini', 'users.txt']) fs.chownSync(path.join(dir, f), user.uid, user.gid!);

  const child: ChildProcess = spawn(PGBOUNCER_BIN, [iniPath], { uid: user.uid, gid: user.gid, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  const killSync = () => child.kill('SIGKILL');
  process.once('exit', killSync);
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });

  const admin = async () => {
    const c = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'pgbouncer', connectionTimeoutMillis: 2000 });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  const stop = async () => {
    process.removeListener('exit', killSync);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM'); // immediate shutdown
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    cleanup();
  };

  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = fs.existsSync(path.join(dir, 'pgbouncer.log')) ? fs.readFileSync(path.join(dir, 'pgbouncer.log'), 'utf8').slice(-2000) : '';
      cleanup();
      if (/Address already in use|listen/i.test(stderr + log)) throw new NotOurs(port);
      throw new Error(`pgbouncer exited (${child.exitCode ?? child.signalCode}): ${stderr}${log}`);
    }
    let pidfile: string | undefined;
    try {
      const c = await admin();
      try {
        const { rows } = await c.query('SHOW CONFIG');
        pidfile = rows.find((r: { key: string }) => r.key === 'pidfile')?.value;
      } finally {
        await c.end();
      }
    } catch (error) {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`pgbouncer on port ${port} did not answer within 10 s: ${(error as Error).message}\n${stderr}`);
      }
      await sleep(50);
      continue;
    }
    if (pidfile === path.join(dir, 'pgbouncer.pid')) break;
    await stop();
    throw new NotOurs(port);
  }
  return { port, url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`, admin, stop };
}

/**
 * Every setting a session changed (SET, set_config(…, false)), as 'name=value, …' ('' when none):
 * a subquery for the server check below.
 */
export const SESSION_SETTINGS_SQL = `(SELECT coalesce(string_agg(name || '=' || setting, ', ' ORDER BY name), '') FROM pg_settings WHERE source = 'session')`;

/** What one of PgBouncer's server connections carries: its backend pid, lock_timeout, advisory locks held, settings a session changed. */
export interface ServerState {
  pid: number;
  lock_timeout: string;
  locks: number;
  session_settings: string;
}

/** The backend pids of PgBouncer's server connections to `database` (its admin console's SHOW SERVERS). */
export async function serverPids(bouncer: PgBouncer, database: string): Promise<number[]> {
  const admin = await bouncer.admin();
  try {
    return (await admin.query('SHOW SERVERS')).rows
      .filter((s: { database: string }) => s.database === database)
      .map((s: { remote_pid: string }) => Number(s.remote_pid));
  } finally {
    await admin.end();
  }
}

/**
 * Pins `count` server connections of `database` at once (the pool's size: each client in a
 * transaction holds one, so all of them are asked) and returns each one's state.
 */
export async function everyServer(bouncer: PgBouncer, database: string, count: number): Promise<ServerState[]> {
  const clients = await Promise.all(
    Array.from({ length: count }, async () => {
      const c = new Client({ connectionString: bouncer.url(database) });
      await c.connect();
      return c;
    }),
  );
  try {
    return await Promise.all(
      clients.map(async (c) => {
        await c.query('BEGIN');
        const {
          rows: [row],
        } = await c.query(
          `SELECT pg_backend_pid() AS pid, current_setting('lock_timeout') AS lock_timeout,
                  (SELECT count(*)::int FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory') AS locks,
                  ${SESSION_SETTINGS_SQL} AS session_settings`,
        );
        return row as ServerState;
      }),
    );
  } finally {
    await Promise.all(
      clients.map((c) =>
        c
          .query('ROLLBACK')
          .catch(() => undefined)
          .then(() => c.end()),
      ),
    );
  }
}

/** The advisory locks held by any backend of `database`, asked on the server over a direct connection. */
export async function advisoryLocksOn(direct: Client, database: string): Promise<Array<{ pid: number; objid: string }>> {
  const { rows } = await direct.query(
    `SELECT l.pid, l.objid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND a.datname = $1`,
    [database],
  );
  return rows;
}

/** Ends PgBouncer's server connections to `database`, on the server over a direct connection (what a control left there goes with them). */
export async function endServers(bouncer: PgBouncer, direct: Client, database: string): Promise<void> {
  const pids = await serverPids(bouncer, database);
  if (pids.length) await direct.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
}

/**
 * The check every PgBouncer suite ends with, on the server itself: no advisory lock held by any
 * backend of `dbName`; every one of the pool's `pool` server connections with the default
 * lock_timeout, no setting a session changed, and no lock; and a control that the check sees a
 * plain SET left on a server connection (through the `${dbName}_ctl` pool of the same bouncer).
 * `get` is called when the tests run (after the suite's before hook).
 */
export function describeServerCheck(get: () => { bouncer: PgBouncer; direct: Client; dbName: string }, pool: number): void {
  describe('after the suite, on the server itself', () => {
    it('no advisory lock is held by any backend of this database', async () => {
      const { direct, dbName } = get();
      expect(await advisoryLocksOn(direct, dbName)).to.deep.equal([]);
    });

    it('control: the check sees a plain SET left on a server connection (another pool of the same PgBouncer)', async () => {
      const { bouncer, direct, dbName } = get();
      const c = new Client({ connectionString: bouncer.url(`${dbName}_ctl`) });
      await c.connect();
      await c.query(`SET lock_timeout = '1234ms'`);
      await c.end();
      try {
        const seen = await everyServer(bouncer, `${dbName}_ctl`, pool);
        expect(seen.map((r) => r.lock_timeout)).to.include('1234ms');
        expect(seen.map((r) => r.session_settings)).to.include('lock_timeout=1234');
      } finally {
        await endServers(bouncer, direct, `${dbName}_ctl`);
      }
    });

    it("every server connection of PgBouncer's pool has the default lock_timeout, no setting a session changed, and holds no lock", async () => {
      const { bouncer, dbName } = get();
      const servers = await serverPids(bouncer, dbName);
      expect(servers.length).to.be.within(1, pool);
      const seen = await everyServer(bouncer, dbName, pool);
      expect(new Set(seen.map((r) => r.pid)).size).to.equal(pool);
      for (const pid of servers)
        expect(
          seen.map((r) => r.pid),
          `server pid ${pid}`,
        ).to.include(pid);
      for (const row of seen) expect(row).to.include({ lock_timeout: '0', locks: 0, session_settings: '' });
    });
  });
}
