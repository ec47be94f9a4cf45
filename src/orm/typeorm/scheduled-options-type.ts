/** Options of createScheduledLockTable / dropScheduledLockTable (no TypeORM type: the barrel's .d.ts needs none). */
export interface ScheduledLockTableOptions {
  /** Table name (default `ormlock_scheduled_locks`); give the same to `withScheduledLock(name, { table })`. */
  table?: string;
}
