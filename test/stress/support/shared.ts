/**
 * What the stress files share, made once per run: per backend, the stress schema, an installed
 * DataSource in this process (for setup and checks) and 4 worker processes; and the three Redis
 * nodes. Closed by the root afterAll hook (test/stress/support/hooks.ts).
 */
import type { DataSource } from 'typeorm';
import { installLocking, type LockingHandle } from '../../../src';
import { createDataSource, type BackendName } from '../../support/backends';
import { clientFor, startRedisNodes, type RedisNodes } from '../../support/redis-servers';
import { STRESS_ENTITIES } from '../fixtures/entities';
import { killWorkers, startWorkers, stopWorkers, type StressWorker } from './workers';

export const PROCESSES = 4;
export const CONCURRENCY = 16;
/** Advisory and Redis namespace of this run: names on shared servers never collide with another run's. */
export const NS = `stress-${process.env.ORMLOCK_TEST_DB}`;

export interface Session {
  readonly backend: BackendName;
  readonly ds: DataSource;
  readonly handle: LockingHandle;
  /** PROCESSES live workers (a killed one is replaced by `replaceDeadWorkers`). */
  workers: StressWorker[];
}

const sessions = new Map<BackendName, Promise<Session | null>>();

/** The backend's session, created on first use; null when the backend is unavailable (skipped locally). */
export function session(backend: BackendName): Promise<Session | null> {
  let s = sessions.get(backend);
  if (!s) {
    s = open(backend);
    sessions.set(backend, s);
  }
  return s;
}

async function open(backend: BackendName): Promise<Session | null> {
  const ds = await createDataSource(backend, STRESS_ENTITIES, { poolSize: 4 });
  if (!ds) return null;
  const handle = await installLocking(ds, { namespace: NS });
  if (backend === 'postgres') {
    // A COMMIT returns before its WAL is flushed to disk (this run's own database only; new
    // connections, i.e. the workers'). Locks, visibility and rollback are unchanged, so the test
    // means the same, but the serialized hot-row runs do not wait for one disk flush per
    // increment (about 2× faster on a small VM).
    await ds.query(`ALTER DATABASE "${process.env.ORMLOCK_TEST_DB}" SET synchronous_commit = off`);
  }
  const workers = await startWorkers(backend, PROCESSES, { namespace: NS, poolSize: CONCURRENCY });
  return { backend, ds, handle, workers };
}

/** Starts a new worker in place of every one that exited (e.g. killed by a fault test). */
export async function replaceDeadWorkers(s: Session): Promise<void> {
  const dead = s.workers.filter((w) => w.child.exitCode !== null || w.child.signalCode !== null);
  if (!dead.length) return;
  const fresh = await startWorkers(s.backend, dead.length, { namespace: NS, poolSize: CONCURRENCY });
  s.workers = [...s.workers.filter((w) => !dead.includes(w)), ...fresh];
  s.workers.forEach((w, i) => (w.index = i));
}

let redis: Promise<RedisNodes> | undefined;

/** Three Redis nodes (node 0 shared, 1 and 2 owned: they can be stopped and restarted). */
export function redisNodes(onUnavailable: (reason: string) => never): Promise<RedisNodes> {
  redis ??= startRedisNodes(onUnavailable);
  redis.catch(() => (redis = undefined));
  return redis;
}

/** Stops the workers, closes the DataSources and the Redis nodes. */
export async function closeAll(): Promise<void> {
  for (const p of sessions.values()) {
    const s = await p.catch(() => null);
    if (!s) continue;
    await stopWorkers(s.workers).catch(() => killWorkers(s.workers));
    s.handle.uninstall();
    if (s.ds.isInitialized) await s.ds.destroy();
  }
  sessions.clear();
  const r = await redis?.catch(() => undefined);
  if (r) {
    // the fencing counters and any lock key this run left on the shared node 0
    const client = clientFor(r.urls[0]);
    try {
      const keys = await client.keys(`${NS}:*`);
      if (keys.length) await client.del(...keys);
    } catch {
      /* best effort */
    } finally {
      client.disconnect();
    }
    await r.close();
  }
  redis = undefined;
}
