/**
 * The seed's Redlock: the S3Worker's fetch → modify → upload, guarded by a Redis lease instead
 * of a database lock (`lock_manager.lock("S3Worker-Lock", ttl)`), for workers that share no
 * database. `redlock.using()` extends the lease while the body runs; each upload carries the
 * lease's fencing token, so a late writer whose lease had expired would be refused.
 * Needs Redis: REDIS_URLS (comma-separated, default redis://127.0.0.1:6379); skipped without it.
 */
import net from 'node:net';
import type { DataSource } from 'typeorm';
import { Redlock } from '../../src';
import { race } from '../../src/testing';
import { Bucket } from '../bucket';
import { sleep, type Scenario } from '../scenario';

const WORKERS = 10;

function redisUrls(): string[] {
  return (process.env.REDIS_URLS ?? 'redis://127.0.0.1:6379')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function answers(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port || 6379) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => done(true));
  });
}

async function performS3Work(bucket: Bucket, job: number, fencingToken?: bigint): Promise<void> {
  const file = await bucket.fetchFile(); // fetch_file
  await sleep(5);
  await bucket.uploadFile(`${file}job ${job}\n`, fencingToken); // modify_file, upload_file
}

export const scenario: Scenario = {
  name: 'Redlock S3Worker',
  strategy: "redlock.using('S3Worker-Lock')",
  order: 50,
  async unavailable() {
    const urls = redisUrls();
    const down = [];
    for (const url of urls) if (!(await answers(url))) down.push(url);
    return down.length ? `no Redis answering at ${down.join(', ')} (set REDIS_URLS)` : undefined;
  },
  async run(_ds: DataSource, { locked }) {
    const bucket = new Bucket();
    if (!locked) {
      const results = await race(WORKERS, (job) => performS3Work(bucket, job));
      const failed = results.filter((r) => r.status === 'rejected');
      if (failed.length) throw (failed[0] as PromiseRejectedResult).reason;
    } else {
      const { default: Redis } = await import('ioredis');
      const clients = redisUrls().map((url) => new Redis(url, { maxRetriesPerRequest: 2 }));
      try {
        const redlock = new Redlock(clients, { prefix: `ormlock-demo:${process.pid}:` });
        const results = await race(WORKERS, (job) =>
          redlock.using('S3Worker-Lock', 5_000, (lease) => performS3Work(bucket, job, lease.fencingToken), {
            retryCount: 200,
            retryDelayMs: 10,
            retryJitterMs: 5,
          }),
        );
        const failed = results.filter((r) => r.status === 'rejected');
        if (failed.length) throw (failed[0] as PromiseRejectedResult).reason;
      } finally {
        for (const c of clients) c.disconnect();
      }
    }
    const lost = WORKERS - bucket.lines().length;
    return {
      anomalies: lost + bucket.refused,
      detail: `${lost} of ${WORKERS} jobs' changes lost from the file${bucket.refused ? `, ${bucket.refused} stale uploads refused` : ''}`,
    };
  },
};
