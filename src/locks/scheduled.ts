import { checkFunction } from '../arguments';
import { runWithLockSignal } from '../context/lock-signal';
import { badOption, badOptions } from '../faults/options';
import { scheduledOverran } from '../faults/scheduled';
import { Redlock } from '../redis/redlock';
import { RedisScheduledStorage } from '../redis/scheduled-lease';
import { DatabaseScheduledStorage } from './scheduled-database';
import { DEFAULT_SCHEDULED_TABLE, scheduledLockProblems, type ScheduledLockOptions } from './scheduled-options';
import type { ScheduledStorage } from './scheduled-storage';

export type { ScheduledLockOptions } from './scheduled-options';

/** What `withScheduledLock` resolves: the job ran (with its result), or another instance held it. */
export type ScheduledRun<T> = { ran: true; result: T } | { ran: false };

/** What the job's body receives. */
export interface ScheduledRunContext {
  /** The job's name. */
  readonly name: string;
  /** Aborted (with LockLostError) when lockAtMostFor passes while the body still runs. */
  readonly signal: AbortSignal;
  /** The run's number (database storage: grows with each run of the job) or the lease's fencing token (Redis). */
  readonly token: bigint;
}

/**
 * Runs a scheduled job at most once across all instances per tick (ShedLock's model): when no
 * other instance holds `name`, takes it for `lockAtMostFor`, runs `fn` and resolves
 * `{ ran: true, result }`; the lock then stays taken until `lockAtLeastFor` after it was taken.
 * When another instance holds it, resolves `{ ran: false }` at once (skipped, never queued).
 * Storage: the installed database (`dataSource`, or the only installation) in a table whose
 * `locked_until` is the database's clock, or Redis (`redlock`). When `lockAtMostFor` passes while
 * `fn` still runs, the run's signal (`currentLockSignal()`, `ctx.signal`) aborts, and the call
 * rejects with LockLostError once `fn` settles (another instance may have run the job meanwhile).
 */
export async function withScheduledLock<T>(
  name: string,
  options: ScheduledLockOptions,
  fn: (ctx: ScheduledRunContext) => Promise<T> | T,
): Promise<ScheduledRun<T>> {
  const problems = scheduledLockProblems(name, options);
  if (problems.length) throw badOptions('withScheduledLock(name, options, fn)', problems, { key: name });
  checkFunction('withScheduledLock(name, options, fn)', fn, 'fn', { key: name });
  const storage = scheduledStorage(options, 'withScheduledLock()');
  const atLeast = options.lockAtLeastFor ?? 0;
  const started = performance.now();
  const hold = await storage.tryAcquire(name, options.lockAtMostFor);
  if (!hold) return { ran: false };

  const controller = new AbortController();
  const remaining = Math.max(0, hold.validMs - (performance.now() - started));
  const timer = setTimeout(() => {
    controller.abort(scheduledOverran(name, options.lockAtMostFor));
  }, remaining);
  timer.unref?.();
  let result: T;
  try {
    result = await runWithLockSignal(controller.signal, (signal) => fn({ name, signal, token: hold.token }));
  } finally {
    clearTimeout(timer);
    // a failed end (storage unreachable) leaves the lock to lapse at lockAtMostFor: the run
    // itself happened, so its outcome stands
    await hold.end(atLeast).catch(() => undefined);
  }
  if (controller.signal.aborted) throw controller.signal.reason;
  return { ran: true, result };
}

/** The storage that options name: Redis with `redlock`, else the database of `dataSource` (or of the only installation). */
export function scheduledStorage(options: ScheduledLockOptions, caller: string): ScheduledStorage {
  if (options.redlock !== undefined) {
    if (!(options.redlock instanceof Redlock)) throw badOption(caller, 'redlock', 'a Redlock instance', options.redlock);
    return new RedisScheduledStorage(options.redlock);
  }
  return new DatabaseScheduledStorage(options.dataSource, options.table ?? DEFAULT_SCHEDULED_TABLE, caller);
}
