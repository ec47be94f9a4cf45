/**
 * What the PgBouncer and second-cluster harnesses share: running a server binary as the
 * `postgres` user (both refuse root), in a directory that user can read. The directory is made
 * under /tmp (mode 0755, owned by `postgres`), never inside the checkout, which may sit under a
 * 0700 directory the `postgres` user cannot enter. Unavailable pieces: a loud skip locally, a
 * failure with CI set.
 */
import { execFile, spawnSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { portFree } from './redis-servers';

export interface RunAs {
  uid?: number;
  gid?: number;
  /** The user the servers run as, for messages. */
  name: string;
}

/** Fails under CI, warns and skips otherwise. */
export function unavailableServer(ctx: Mocha.Context, what: string, reason: string): never {
  if (process.env.CI) throw new Error(`${what} cannot run: ${reason}`);
  console.warn(`\n  !!! SKIPPING ${what}: ${reason}\n`);
  ctx.skip();
}

/** Starts a server the harness needs; when it does not start, the same as unavailableServer (a loud skip, or a failure with CI set). */
export async function startOrSkip<T>(ctx: Mocha.Context, what: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    unavailableServer(ctx, what, `it did not start: ${(error as Error).message}`);
  }
}

/** As root: the `postgres` user's ids; otherwise the current user (servers refuse only root). */
export function serverUser(): RunAs | string {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { name: os.userInfo().username };
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return 'running as root and there is no `postgres` user to run the server as';
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()), name: 'postgres' };
}

/** A fresh directory the server user owns and can read (0755, under /tmp). */
export function serverDirectory(user: RunAs, prefix: string): string {
  const base = fs.existsSync('/tmp') ? '/tmp' : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, prefix));
  fs.chmodSync(dir, 0o755);
  if (user.uid !== undefined) fs.chownSync(dir, user.uid, user.gid!);
  return dir;
}

/** Runs a command as the server user; rejects with its output when it fails. */
export function runAs(user: RunAs, file: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { uid: user.uid, gid: user.gid, cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' } }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${path.basename(file)} ${args.join(' ')} failed: ${error.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/** A loopback port nobody listens on, from `from` up. */
export async function sparePort(from: number): Promise<number> {
  for (let port = from; port < from + 1000; port++) if (await portFree(port)) return port;
  throw new Error(`no free loopback port in ${from}..${from + 999}`);
}
