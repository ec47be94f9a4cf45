import type { DataSource } from 'typeorm';
import { inspectLocks, type LockWait } from '../src';

/**
 * Polls `inspectLocks` while a scenario runs and keeps the first snapshot that shows a wait
 * (every 150 ms: MariaDB refreshes its lock tables only when they were not read for 0.1 s).
 */
export function catchLockWaits(ds: DataSource): { stop(): Promise<LockWait[] | undefined> } {
  let caught: LockWait[] | undefined;
  let running = true;
  const loop = (async () => {
    while (running && !caught) {
      const waits = await inspectLocks(ds).catch(() => []);
      if (waits.length) caught = waits;
      else await new Promise((r) => setTimeout(r, 150));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return caught;
    },
  };
}

/** The snapshot worth showing: one that names an advisory key beats one that does not. */
export function better(current: LockWait[] | undefined, next: LockWait[] | undefined): LockWait[] | undefined {
  const keyed = (w?: LockWait[]) => !!w?.some((x) => x.lock.key !== undefined);
  if (!current) return next;
  return !keyed(current) && keyed(next) ? next : current;
}
