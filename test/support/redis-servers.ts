/**
 * Three Redis nodes for the Redlock tests and bench: node 0 is the shared server
 * (first of REDIS_URLS, default redis://127.0.0.1:6379; never stopped), nodes 1 and 2 are
 * `redis-server` child processes this module starts on free loopback ports (from 6380 up;
 * a port already answering belongs to someone else and is skipped, because the tests stop
 * and restart their nodes and must own them). Started nodes have no persistence, so a
 * restarted node comes back empty, like a crashed one.
 *
 * With `{ ownAll: true }` node 0 is started too (all three are owned): for tests that flush or
 * restart every node (FLUSHALL on the shared server would wipe other runs' keys).
 *
 * When Redis or the `redis-server` binary is missing: with CI set that is a failure,
 * otherwise a loud skip (console.warn + this.skip()).
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import net from 'net';
import os from 'os';
import Redis from 'ioredis';

export interface RedisNodes {
  /** redis:// URLs of the three nodes, in node order. */
  readonly urls: string[];
  /** New ioredis clients, one per node (closed by `close()`). */
  clients(): Redis[];
  /** Kills owned node i (1 or 2; 0 too with ownAll), like a crash; resolves once the process is gone. */
  stop(node: number): Promise<void>;
  /** Starts owned node i again on the same port (empty); resolves once it answers. */
  restart(node: number): Promise<void>;
  /** Resolves when every given client is `ready` again (after a restart). */
  waitReady(clients: Redis[], timeoutMs?: number): Promise<void>;
  /** Kills the owned nodes and closes the clients made by `clients()`. */
  close(): Promise<void>;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';

export function redisUrls(): string[] {
  return (process.env.REDIS_URLS ?? DEFAULT_URL)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Fails under CI, warns and skips otherwise. */
export function unavailable(ctx: Mocha.Context, reason: string): never {
  if (process.env.CI) throw new Error(`Redis tests cannot run: ${reason}`);
  console.warn(`\n  !!! SKIPPING Redis tests: ${reason}\n`);
  ctx.skip();
}

/** A client of the shared Redis (first of REDIS_URLS), connected; when it does not answer: `unavailable` (a skip, or a failure under CI). */
export async function sharedRedisClient(ctx: Mocha.Context): Promise<Redis> {
  const url = redisUrls()[0];
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return client;
  } catch (error) {
    client.disconnect();
    return unavailable(ctx, `no Redis at ${url}: ${(error as Error).message}`);
  }
}

/** Options for test clients: reconnect fast, never queue forever, never crash on 'error'. */
export function clientFor(url: string): Redis {
  const client = new Redis(url, {
    retryStrategy: () => 50,
    maxRetriesPerRequest: 2,
    enableAutoPipelining: false,
  });
  client.on('error', () => undefined);
  return client;
}

/** Starts the owned nodes; `onUnavailable` is called (and must throw) when Redis cannot be had. */
export async function startRedisNodes(onUnavailable: (reason: string) => never, options: { ownAll?: boolean } = {}): Promise<RedisNodes> {
  const mainUrl = redisUrls()[0];
  const main = new URL(mainUrl);
  if (!options.ownAll && !(await answersPing(main.hostname, Number(main.port || 6379)))) {
    onUnavailable(`no Redis answering at ${mainUrl} (set REDIS_URLS)`);
  }
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    onUnavailable('the redis-server binary is not on PATH (needed to start the extra nodes)');
  }

  const ownedNodes = options.ownAll ? [0, 1, 2] : [1, 2];
  const owned = new Map<number, { port: number; child?: ChildProcess }>();
  let port = Number(process.env.REDLOCK_TEST_PORT ?? 6380);
  for (const node of ownedNodes) {
    while (!(await portFree(port))) port++;
    owned.set(node, { port });
    port++;
  }
  const children = new Set<ChildProcess>();
  const killAll = (): void => {
    for (const child of children) child.kill('SIGKILL');
  };
  process.once('exit', killAll);

  const start = async (node: number): Promise<void> => {
    const entry = owned.get(node)!;
    const child = spawn(
      'redis-server',
      ['--port', String(entry.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'],
      { cwd: os.tmpdir(), stdio: 'ignore' },
    );
    children.add(child);
    child.once('exit', () => children.delete(child));
    entry.child = child;
    const deadline = Date.now() + 10_000;
    while (!(await answersPing('127.0.0.1', entry.port))) {
      if (child.exitCode !== null) throw new Error(`redis-server on port ${entry.port} exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error(`redis-server on port ${entry.port} did not answer within 10 s`);
      await sleep(20);
    }
  };
  const stop = async (node: number): Promise<void> => {
    const entry = owned.get(node);
    if (!entry) throw new Error(`node ${node} is not owned by the tests (only ${ownedNodes.join(' and ')} can be stopped)`);
    const child = entry.child;
    entry.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  };

  await Promise.all(ownedNodes.map(start));
  const made: Redis[] = [];
  const urls = [0, 1, 2].map((n) => (owned.has(n) ? `redis://127.0.0.1:${owned.get(n)!.port}` : mainUrl));

  return {
    urls,
    clients() {
      const list = urls.map(clientFor);
      made.push(...list);
      return list;
    },
    stop,
    async restart(node: number) {
      await stop(node);
      await start(node);
    },
    async waitReady(clients: Redis[], timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (clients.some((c) => c.status !== 'ready')) {
        if (Date.now() > deadline) throw new Error(`clients not ready: ${clients.map((c) => c.status).join(', ')}`);
        await sleep(10);
      }
    },
    async close() {
      for (const c of made) c.disconnect();
      await Promise.all(ownedNodes.map(stop));
      process.removeListener('exit', killAll);
    },
  };
}

function answersPing(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let data = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
  });
}

/** True when nobody listens on the loopback port (also used by the PgBouncer / PostgreSQL harnesses). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
