/**
 * What an uncontended semaphore acquisition + release costs the Redis node itself, counted in
 * instructions, not seconds: redis-server runs under valgrind's callgrind (which counts the same
 * total for the same work whatever else the machine does), once per library and per number of
 * operations. The figure per operation is (count after `many` − count after `few`) ÷ (many −
 * few), so the server's start, stop and idle work cancel out. Also: the commands the node ran
 * per operation (INFO commandstats, the scripts' inner calls included).
 *
 * Compared: ormlock's `redlock.semaphore(name, 3)` tryAcquire + release, and redis-semaphore's
 * `Semaphore` tryAcquire + release, one at a time on one node.
 *
 * Run: npx ts-node --transpile-only bench/semaphore-node-cost.ts [--quick]
 *      npm run bench              (among the extras of bench/run.ts)
 * Needs `valgrind` and `redis-server` on PATH.
 */
import { spawn, spawnSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import Redis from 'ioredis';
import { Redlock } from '../src/redis/redlock';
import { sparePort } from '../test/support/postgres-user';

type Op = () => Promise<unknown>;
type Side = 'ormlock' | 'redis-semaphore';

export interface NodeCostRow {
  library: string;
  /** callgrind's instruction count on redis-server per acquire + release. */
  instructionsPerOp: number;
  /** ÷ redis-semaphore's figure. */
  ratio?: string;
  /** Commands the node ran per operation (calls ÷ operations), by command. */
  commandsPerOp: string;
}

async function opFor(side: Side, client: Redis): Promise<Op> {
  if (side === 'ormlock') {
    const sem = new Redlock([client], { prefix: 'node-cost:' }).semaphore('a', 3);
    return async () => {
      const permit = await sem.tryAcquire(5000);
      if (!permit) throw new Error('ormlock: no permit');
      await permit.release();
    };
  }
  const { Semaphore } = await import('redis-semaphore');
  const sem = new Semaphore(client, 'node-cost:theirs', 3, { lockTimeout: 5000, acquireAttemptsLimit: 1, refreshInterval: 0 });
  return async () => {
    if (!(await sem.tryAcquire())) throw new Error('redis-semaphore: no permit');
    await sem.release();
  };
}

/** Starts redis-server under callgrind, runs `ops` operations of `side`, stops it: its instruction count and commandstats. */
async function countRun(side: Side, ops: number, dir: string): Promise<{ instructions: number; stats: Map<string, number> }> {
  const port = await sparePort(6400);
  const out = path.join(dir, `${side}-${ops}.callgrind`);
  const child = spawn(
    'valgrind',
    ['--tool=callgrind', `--callgrind-out-file=${out}`, 'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined); // refused connections while valgrind starts the server: retried below
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await client.connect();
        await client.ping();
        break;
      } catch (error) {
        client.disconnect();
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server under valgrind did not answer: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    const op = await opFor(side, client);
    await op(); // loads the scripts; counted in both runs, so it cancels out
    await client.config('RESETSTAT');
    for (let i = 0; i < ops; i++) await op();
    const stats = new Map<string, number>();
    for (const line of (await client.info('commandstats')).split('\n')) {
      const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
      if (m && m[1] !== 'info' && !m[1].startsWith('config')) stats.set(m[1], Number(m[2]));
    }
    await client.call('SHUTDOWN', 'NOSAVE').catch(() => undefined); // the connection closes as it answers
    if ((await exited) !== 0) throw new Error(`redis-server under valgrind exited with ${child.exitCode}`);
    const summary = /^(?:summary|totals): (\d+)/m.exec(fs.readFileSync(out, 'utf8'));
    if (!summary) throw new Error(`no instruction total in ${out}`);
    return { instructions: Number(summary[1]), stats };
  } finally {
    client.disconnect();
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

export async function benchSemaphoreNodeCost(opts: { quick: boolean }): Promise<{ rows: NodeCostRow[]; notes: string[] }> {
  for (const tool of ['valgrind', 'redis-server']) {
    if (spawnSync(tool, ['--version']).status !== 0) throw new Error(`${tool} is not on PATH`);
  }
  const few = opts.quick ? 50 : 500;
  const many = opts.quick ? 250 : 2500;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ormlock-node-cost-'));
  try {
    const rows: NodeCostRow[] = [];
    for (const side of ['redis-semaphore', 'ormlock'] as Side[]) {
      const a = await countRun(side, few, dir);
      const b = await countRun(side, many, dir);
      const perOp = Math.round((b.instructions - a.instructions) / (many - few));
      const commandsPerOp = [...b.stats]
        .sort(([x], [y]) => x.localeCompare(y))
        .map(([name, calls]) => `${name} ${Math.round((calls / many) * 100) / 100}`)
        .join(', ');
      rows.push({ library: side, instructionsPerOp: perOp, commandsPerOp });
    }
    const theirs = rows[0].instructionsPerOp;
    rows[1].ratio = `${(rows[1].instructionsPerOp / theirs).toFixed(2)}×`;
    return {
      rows: [rows[1], rows[0]],
      notes: [
        `instructions executed by redis-server (valgrind callgrind) per tryAcquire + release, one node, permits 3, uncontended: ` +
          `(count after ${many} operations − count after ${few}) ÷ ${many - few}; ratio: ormlock ÷ redis-semaphore (below 1: cheaper for the node)`,
      ],
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  benchSemaphoreNodeCost({ quick: process.argv.includes('--quick') }).then(
    (r) => {
      console.table(r.rows);
      for (const n of r.notes) console.log(`note: ${n}`);
    },
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
