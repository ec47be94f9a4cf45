/**
 * Profiles the Redis semaphore against redis-semaphore, uncontended, one operation at a time, in
 * interleaved slices in one process (machine noise hits every path alike), on three Redis nodes
 * this script starts (owned, so their command statistics are ours alone):
 * - `ours-N` / `theirs-N`: tryAcquire + release on N nodes (1 or 3; permits 3);
 * - `ours-using-N` / `theirs-using-N`: using(noop) (theirs: acquire, noop, release);
 * - `ours1p-3` / `theirs1p-3`: 1 permit on 3 nodes (quorum 2 on both sides).
 * Prints per path: wall and client CPU µs per op (median over the slices), commands sent per op
 * (counted on the clients) and, per node, what the server ran per op (INFO commandstats: calls per op by
 * command, the scripts' inner commands included, and the µs of EVALSHA and ZREM).
 *
 *   node -r ts-node/register/transpile-only bench/profile-semaphore.ts [ops] [slices]
 *   PROFILE_ONLY=ours-1,theirs-1 …   (only these paths)
 *   PROFILE_CPU=/tmp/prof …   (also a CPU profile of each path's loop alone: /tmp/prof/<path>.cpuprofile)
 */
import { performance } from 'perf_hooks';
import type Redis from 'ioredis';
import { Redlock } from '../src/redis/redlock';
import { startRedisNodes } from '../test/support/redis-servers';

type Op = () => Promise<unknown>;

async function main(): Promise<void> {
  const ops = Number(process.argv[2] ?? 2000);
  const slices = Number(process.argv[3] ?? 10);
  const ttl = 5000;
  const { Semaphore: RsSemaphore, RedlockSemaphore } = await import('redis-semaphore');
  const nodes = await startRedisNodes(
    (reason) => {
      throw new Error(reason);
    },
    { ownAll: true },
  );
  try {
    const paths: Array<{ name: string; clients: Redis[]; op: Op }> = [];
    for (const n of [1, 3]) {
      const clients = nodes.clients().slice(0, n);
      await nodes.waitReady(clients);
      const redlock = new Redlock(clients, { prefix: `prof:${n}:` });
      const ours = redlock.semaphore('a', 3);
      const ours1 = redlock.semaphore('one', 1);
      const options = { lockTimeout: ttl, acquireAttemptsLimit: 1, refreshInterval: 0 };
      const make = (key: string, permits: number) =>
        n === 1 ? new RsSemaphore(clients[0], `prof:${n}:${key}`, permits, options) : new RedlockSemaphore(clients, `prof:${n}:${key}`, permits, options);
      const theirs = make('a', 3);
      const theirs1 = make('one', 1);
      const theirsUsing = make('u', 3);
      paths.push(
        {
          name: `ours-${n}`,
          clients,
          op: async () => {
            const p = await ours.tryAcquire(ttl);
            if (!p) throw new Error('ours: no permit');
            await p.release();
          },
        },
        {
          name: `theirs-${n}`,
          clients,
          op: async () => {
            if (!(await theirs.tryAcquire())) throw new Error('theirs: no permit');
            await theirs.release();
          },
        },
        { name: `ours-using-${n}`, clients, op: () => ours.using(ttl, async () => undefined) },
        {
          name: `theirs-using-${n}`,
          clients,
          op: async () => {
            await theirsUsing.acquire();
            try {
              await (async () => undefined)();
            } finally {
              await theirsUsing.release();
            }
          },
        },
      );
      if (n === 3) {
        paths.push(
          {
            name: `ours1p-${n}`,
            clients,
            op: async () => {
              const p = await ours1.tryAcquire(ttl);
              if (!p) throw new Error('ours1: no permit');
              await p.release();
            },
          },
          {
            name: `theirs1p-${n}`,
            clients,
            op: async () => {
              if (!(await theirs1.tryAcquire())) throw new Error('theirs1: no permit');
              await theirs1.release();
            },
          },
        );
      }
    }
    const only = process.env.PROFILE_ONLY?.split(',');
    const chosen = only ? paths.filter((p) => only.includes(p.name)) : paths;
    const admin = nodes.clients();
    for (const p of chosen) for (let i = 0; i < 300; i++) await p.op();

    // commands per op, and the server's work per op (each path alone, after the warm-up)
    const serverWork = new Map<string, string>();
    const sent = new Map<string, number>();
    for (const p of chosen) {
      let count = 0;
      const originals = p.clients.map((c) => c.sendCommand);
      p.clients.forEach((c, i) => {
        c.sendCommand = function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
          count++;
          return originals[i].apply(this, args);
        } as Redis['sendCommand'];
      });
      await Promise.all(admin.map((a) => a.config('RESETSTAT')));
      const n = 200;
      for (let i = 0; i < n; i++) await p.op();
      await new Promise((r) => setTimeout(r, 30));
      p.clients.forEach((c, i) => (c.sendCommand = originals[i]));
      sent.set(p.name, count / n);
      const stats = await Promise.all(admin.slice(0, p.clients.length).map((a) => a.info('commandstats')));
      serverWork.set(
        p.name,
        stats
          .map((text, node) => {
            const parts: string[] = [];
            for (const line of text.split('\n')) {
              const m = /^cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
              if (!m || m[1] === 'config' || m[1] === 'info') continue;
              // calls per op, and µs per op of the commands the client sent (a script's µs include its inner commands')
              const top = m[1] === 'evalsha' || m[1] === 'zrem' || m[1] === 'eval';
              parts.push(`${m[1]} ${(Number(m[2]) / n).toFixed(1)}${top ? ` (${(Number(m[3]) / n).toFixed(1)} µs)` : ''}`);
            }
            return `node ${node}: [${parts.join(', ')}]`;
          })
          .join(' | '),
      );
    }

    const wall = new Map<string, number[]>();
    const cpu = new Map<string, number[]>();
    const chunk = Math.ceil(ops / slices);
    for (let s = 0; s < slices; s++) {
      const order = s % 2 === 0 ? chosen : [...chosen].reverse();
      for (const p of order) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        for (let i = 0; i < chunk; i++) await p.op();
        const took = performance.now() - t0;
        const used = process.cpuUsage(c0);
        (wall.get(p.name) ?? wall.set(p.name, []).get(p.name)!).push((took * 1000) / chunk);
        (cpu.get(p.name) ?? cpu.set(p.name, []).get(p.name)!).push((used.user + used.system) / chunk);
      }
    }
    const dir = process.env.PROFILE_CPU;
    if (dir) {
      // one CPU profile per path, of its loop alone
      const { Session } = await import('inspector');
      const { writeFileSync, mkdirSync } = await import('fs');
      mkdirSync(dir, { recursive: true });
      const session = new Session();
      session.connect();
      const post = (method: string, params?: object) =>
        new Promise<any>((resolve, reject) => session.post(method, params ?? {}, (error, result) => (error ? reject(error) : resolve(result))));
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: 50 });
      for (const p of chosen) {
        await post('Profiler.start');
        for (let i = 0; i < ops; i++) await p.op();
        const { profile } = await post('Profiler.stop');
        writeFileSync(`${dir}/${p.name}.cpuprofile`, JSON.stringify(profile));
      }
      session.disconnect();
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const p of chosen) {
      console.log(
        `${p.name.padEnd(16)} wall ${median(wall.get(p.name)!).toFixed(0).padStart(5)} µs  cpu ${median(cpu.get(p.name)!).toFixed(0).padStart(4)} µs  ` +
          `sent ${sent.get(p.name)}  server ${serverWork.get(p.name)}`,
      );
    }
  } finally {
    await nodes.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
