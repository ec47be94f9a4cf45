import Redis from 'ioredis';
import { redisUrls } from './redis-servers';

/** True when the first of REDIS_URLS answers PING (one short-lived client, never retried). */
export async function redisAnswers(url = redisUrls()[0]): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** Without Redis: a failure under CI, a loud skip otherwise. */
export async function requireRedis(ctx: Mocha.Context, what: string): Promise<void> {
  if (await redisAnswers()) return;
  if (process.env.CI) throw new Error(`${what}: Redis at ${redisUrls()[0]} does not answer and CI is set`);
  console.warn(`\n  !!! SKIPPING ${what}: no Redis at ${redisUrls()[0]} (set REDIS_URLS)\n`);
  ctx.skip();
}
