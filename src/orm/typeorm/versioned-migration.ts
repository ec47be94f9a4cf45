import { Table, TableColumn, type QueryRunner } from 'typeorm';
import { columnExists, noSuchTable } from '../../faults/migrations';
import { badOption } from '../../faults/options';
import type { AddVersionColumnOptions } from './public-types';

export type { AddVersionColumnOptions } from './public-types';
/**
 * For a table that already has rows, adopting `@Versioned`: adds a NOT NULL integer version
 * column whose existing rows all get `options.default` (1), in one `ALTER TABLE … ADD … DEFAULT`
 * (PostgreSQL ≥ 11 and MariaDB ≥ 10.3 do it without rewriting the table).
 *
 * ```ts
 * export class AddVersionToAccounts1760000000000 implements MigrationInterface {
 *   up = (qr: QueryRunner) => addVersionColumn(qr, 'accounts');
 *   down = (qr: QueryRunner) => dropVersionColumn(qr, 'accounts');
 * }
 * ```
 */
export async function addVersionColumn(
  queryRunner: QueryRunner,
  table: string | Table,
  column = 'version',
  options: AddVersionColumnOptions = {},
): Promise<void> {
  const initial = options.default ?? 1;
  const type = options.type ?? 'int';
  const where = `addVersionColumn(${typeof table === 'string' ? table : table?.name}, '${column}')`;
  if (!Number.isSafeInteger(initial)) throw badOption(where, 'default', 'an integer', options.default);
  if (!['int', 'integer', 'bigint'].includes(type)) throw badOption(where, 'type', "'int', 'integer' or 'bigint'", type);
  if (typeof column !== 'string' || column.length === 0) throw badOption(where, 'column', 'a non-empty name', column);
  const found = await findTable(queryRunner, table, where);
  if (found.findColumnByName(column)) {
    throw columnExists(where, found.name, column);
  }
  const definition = { name: column, type, isNullable: false, default: String(initial) };
  await queryRunner.addColumn(found, new TableColumn(definition));
  if (options.keepDefault === false) {
    // change the column as the database reports it, default aside (a different type spelling
    // would make TypeORM drop and re-add the column)
    const withColumn = await findTable(queryRunner, found.name, where);
    const added = withColumn.findColumnByName(column)!;
    const withoutDefault = added.clone();
    withoutDefault.default = undefined;
    await queryRunner.changeColumn(withColumn, added, withoutDefault);
  }
}

/** The `down` of `addVersionColumn`: drops the version column if it is there. */
export async function dropVersionColumn(queryRunner: QueryRunner, table: string | Table, column = 'version'): Promise<void> {
  const where = `dropVersionColumn(${typeof table === 'string' ? table : table?.name}, '${column}')`;
  const found = await findTable(queryRunner, table, where);
  if (found.findColumnByName(column)) await queryRunner.dropColumn(found, column);
}

async function findTable(queryRunner: QueryRunner, table: string | Table, where: string): Promise<Table> {
  if (!queryRunner || typeof (queryRunner as { getTable?: unknown }).getTable !== 'function') {
    throw badOption(where, 'queryRunner', "a TypeORM QueryRunner (the migration's up/down argument)", queryRunner);
  }
  const name = typeof table === 'string' ? table : table?.name;
  if (!name) throw badOption(where, 'table', 'a table name or Table', table);
  const found = await queryRunner.getTable(name);
  if (!found) throw noSuchTable(where, name);
  return found;
}
