/**
 * A second PostgreSQL 15 cluster for the replica tests: `initdb` + `pg_ctl start` on a spare
 * loopback port, as the `postgres` user, in a directory under /tmp; `stop()` stops it
 * (`-m immediate`) and removes the directory. About 3 s to start.
 *
 * Not a streaming replica: a separate server on which the tests create the same schema with
 * different marker rows, so that a read that went to it is visible (and `inet_server_port()`
 * says which server answered).
 */
import fs from 'fs';
import path from 'path';
import { runAs, serverDirectory, serverUser, sparePort } from './postgres-user';

export const PG_BIN = process.env.ORMLOCK_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PgCluster {
  readonly port: number;
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url(database?: string): string;
  stop(): Promise<void>;
}

/** Why a second cluster cannot start here, or undefined when it can. */
export function pgClusterUnavailable(): string | undefined {
  for (const bin of ['initdb', 'pg_ctl']) {
    if (!fs.existsSync(path.join(PG_BIN, bin))) return `${path.join(PG_BIN, bin)} is missing (Debian: apt-get install postgresql-15, or set ORMLOCK_PG_BIN)`;
  }
  const user = serverUser();
  return typeof user === 'string' ? user : undefined;
}

export async function startPgCluster(): Promise<PgCluster> {
  const user = serverUser();
  if (typeof user === 'string') throw new Error(user);
  const dir = serverDirectory(user, 'ormlock-cluster-');
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  const port = await sparePort(Number(process.env.ORMLOCK_PG2_PORT ?? 55432));
  try {
    await runAs(user, path.join(PG_BIN, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions'], dir);
    await runAs(
      user,
      path.join(PG_BIN, 'pg_ctl'),
      ['-D', data, '-l', log, '-w', '-t', '30', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start'],
      dir,
    );
  } catch (error) {
    const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-2000) : '';
    await runAs(user, path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop'], dir).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(error as Error).message}\n${tail}`);
  }
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', stopSync);
    await runAs(user, path.join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], dir).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // a test run that dies leaves no server behind
  const stopSync = () => {
    try {
      const pid = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid > 0) process.kill(pid, 'SIGQUIT');
    } catch {
      /* already gone */
    }
  };
  process.once('exit', stopSync);
  return { port, url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`, stop };
}
