import { optionsProblems } from '../arguments';

/** Options of `withScheduledLock` / `@ScheduledLock`. Times in ms. */
export interface ScheduledLockOptions {
  /**
   * The longest a run may hold the lock: a holder that dies (or hangs) frees it this long after it
   * took it, by the storage's clock. Longer than the job's longest run; the run's lock signal
   * aborts when it passes while the job still runs.
   */
  lockAtMostFor: number;
  /**
   * The shortest time the lock stays taken after a run started, even when the job finished
   * sooner: instances whose clocks and schedules differ by less than this never run the same
   * tick twice. Default 0; at most `lockAtMostFor`.
   */
  lockAtLeastFor?: number;
  /** Database storage: the installed DataSource or MikroORM instance (default: the only installation). */
  dataSource?: unknown;
  /** Redis storage: a `Redlock` (instead of `dataSource`). */
  redlock?: unknown;
  /** Database storage: the lock table (default `ormlock_scheduled_locks`). */
  table?: string;
}

export const SCHEDULED_OPTIONS = ['lockAtMostFor', 'lockAtLeastFor', 'dataSource', 'redlock', 'table'];
export const DEFAULT_SCHEDULED_TABLE = 'ormlock_scheduled_locks';
/** Longest job name (UTF-8 bytes): the lock table's key column, and a Redis key part. */
export const MAX_SCHEDULED_NAME_BYTES = 190;

/** Problems with a job name and its options (empty when fine). */
export function scheduledLockProblems(name: unknown, options: unknown): string[] {
  const problems: string[] = [];
  if (typeof name !== 'string' || name.length === 0) problems.push(`name must be a non-empty string (got ${typeof name === 'string' ? "''" : typeof name})`);
  else if (Buffer.byteLength(name, 'utf8') > MAX_SCHEDULED_NAME_BYTES) problems.push(`name must be at most ${MAX_SCHEDULED_NAME_BYTES} UTF-8 bytes`);
  if (options === undefined || options === null) return [...problems, 'options { lockAtMostFor } are required'];
  const shape = optionsProblems(options, SCHEDULED_OPTIONS);
  if (shape.length) return [...problems, ...shape];
  const o = options as ScheduledLockOptions;
  if (!Number.isInteger(o.lockAtMostFor) || o.lockAtMostFor <= 0)
    problems.push(`lockAtMostFor must be a positive integer of ms (got ${String(o.lockAtMostFor)})`);
  if (o.lockAtLeastFor !== undefined) {
    if (!Number.isInteger(o.lockAtLeastFor) || o.lockAtLeastFor < 0)
      problems.push(`lockAtLeastFor must be an integer of ms ≥ 0 (got ${String(o.lockAtLeastFor)})`);
    else if (Number.isInteger(o.lockAtMostFor) && o.lockAtLeastFor > o.lockAtMostFor)
      problems.push(`lockAtLeastFor (${o.lockAtLeastFor}) must not exceed lockAtMostFor (${o.lockAtMostFor})`);
  }
  if (o.dataSource !== undefined && o.redlock !== undefined) problems.push('give either dataSource (database storage) or redlock (Redis storage), not both');
  if (o.table !== undefined && o.redlock !== undefined) problems.push('table applies to database storage only, not with redlock');
  return problems;
}
