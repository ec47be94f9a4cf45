import type { DataSource } from 'typeorm';
import { LockConfigError } from '../errors';
import type { LockDialect, RunQuery } from './dialect';
import { MariaDbDialect } from './mysql/mariadb-dialect';
import { MysqlDialect } from './mysql/mysql-dialect';
import { PostgresDialect } from './postgres/postgres-dialect';

export type { LockDialect, DialectCapabilities, ErrorContext } from './dialect';
export { PostgresDialect, MysqlDialect, MariaDbDialect };

/**
 * Picks the dialect for a DataSource: the only place that looks at the database's name.
 * MySQL-protocol servers are asked their version, so a MariaDB behind `type: 'mysql'` is
 * still treated as MariaDB.
 */
export async function detectDialect(dataSource: DataSource): Promise<LockDialect> {
  const type = dataSource.driver.options.type;
  switch (type) {
    case 'postgres':
    case 'cockroachdb':
      return dialectForServer('postgres', (sql, params) => dataSource.query(sql, params));
    case 'mysql':
    case 'mariadb':
    case 'aurora-mysql':
      return dialectForServer('mysql', (sql, params) => dataSource.query(sql, params));
    default:
      throw new LockConfigError(
        `ormlock supports PostgreSQL, MySQL and MariaDB; this DataSource is '${type}'.`,
      );
  }
}

/** The dialect of a server of one protocol family, asking a MySQL-protocol server its version through `run`. */
export async function dialectForServer(family: 'postgres' | 'mysql', run: RunQuery): Promise<LockDialect> {
  if (family === 'postgres') return new PostgresDialect();
  const [row] = await run('SELECT VERSION() AS v', []);
  return /mariadb/i.test(String(row?.v)) ? new MariaDbDialect() : new MysqlDialect();
}
