import type { DataSource, QueryRunner } from 'typeorm';
import { DEFAULT_SCHEDULED_TABLE } from '../../locks/scheduled-options';
import { checkFencingTable } from '../../redis/fencing';
import { tableTarget } from './table-target';

export type { ScheduledLockTableOptions } from './scheduled-options-type';
import type { ScheduledLockTableOptions } from './scheduled-options-type';
import { dialectLacks } from '../../faults/options';

/**
 * Creates the lock table of scheduled jobs (`withScheduledLock` / `@ScheduledLock` with database
 * storage) if it does not exist: one row per job name with `locked_until`, `locked_at`,
 * `locked_by` and `runs`. Takes a DataSource (at start-up), a migration's QueryRunner, or an
 * installed MikroORM instance:
 *
 * ```ts
 * export class ScheduledLocks1780000000000 implements MigrationInterface {
 *   up = (qr: QueryRunner) => createScheduledLockTable(qr);
 *   down = (qr: QueryRunner) => dropScheduledLockTable(qr);
 * }
 * ```
 */
export async function createScheduledLockTable(target: DataSource | QueryRunner | object, options: ScheduledLockTableOptions = {}): Promise<void> {
  const { run, scheduled, table } = await resolve(target, options, 'createScheduledLockTable');
  for (const sql of scheduled.createTableSql(table)) await run(sql);
}

/** The `down` of `createScheduledLockTable`: drops the lock table if it is there. */
export async function dropScheduledLockTable(target: DataSource | QueryRunner | object, options: ScheduledLockTableOptions = {}): Promise<void> {
  const { run, scheduled, table } = await resolve(target, options, 'dropScheduledLockTable');
  await run(scheduled.dropTableSql(table));
}

async function resolve(target: unknown, options: ScheduledLockTableOptions, where: string) {
  const table = checkFencingTable(options?.table ?? DEFAULT_SCHEDULED_TABLE, where);
  const { run, dialect } = await tableTarget(target, where);
  if (!dialect.scheduled) throw dialectLacks(where, dialect.name, 'scheduled-job locks');
  return { run, scheduled: dialect.scheduled, table };
}
