import type { DataSource, QueryRunner } from 'typeorm';
import { dialectLacks } from '../../faults/options';
import { checkFencingTable, DEFAULT_FENCING_TABLE } from '../../redis/fencing';
import { tableTarget } from './table-target';
import type { FencingTableOptions } from './public-types';

export type { FencingTableOptions } from './public-types';

/**
 * Creates the fencing-token counter table of `new Redlock(clients, { fencing: { dataSource } })`
 * if it does not exist: `lock_key` (primary key) and `token` (bigint), one row per lock key;
 * on PostgreSQL and MariaDB also the sequence `<table>_seq` that database semaphores draw their
 * fencing tokens from.
 * Takes a DataSource (at start-up) or a migration's QueryRunner:
 *
 * ```ts
 * export class FencingTokens1770000000000 implements MigrationInterface {
 *   up = (qr: QueryRunner) => createFencingTable(qr);
 *   down = (qr: QueryRunner) => dropFencingTable(qr);
 * }
 * ```
 */
export async function createFencingTable(target: DataSource | QueryRunner, options: FencingTableOptions = {}): Promise<void> {
  const { run, fencing, table } = await resolve(target, options, 'createFencingTable');
  for (const sql of fencing.createTableSql(table)) await run(sql);
}

/** The `down` of `createFencingTable`: drops the counter table if it is there (tokens start again from 1 — only for tearing down). */
export async function dropFencingTable(target: DataSource | QueryRunner, options: FencingTableOptions = {}): Promise<void> {
  const { run, fencing, table } = await resolve(target, options, 'dropFencingTable');
  await run(fencing.dropTableSql(table));
  if (fencing.dropSequenceSql) await run(fencing.dropSequenceSql(table));
}

async function resolve(target: DataSource | QueryRunner, options: FencingTableOptions, where: string) {
  const table = checkFencingTable(options?.table ?? DEFAULT_FENCING_TABLE, where);
  const { run, dialect } = await tableTarget(target, where);
  if (!dialect.fencing) throw dialectLacks(where, dialect.name, 'fencing counters');
  return { run, fencing: dialect.fencing, table };
}
