import type { DataSource } from 'typeorm';
import { LockConfigError } from '../errors';
import type { LockDialect } from './dialect';
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
      return new PostgresDialect();
    case 'mysql':
    case 'mariadb':
    case 'aurora-mysql': {
      const [row] = await dataSource.query('SELECT VERSION() AS v');
      return /mariadb/i.test(String(row?.v)) ? new MariaDbDialect() : new MysqlDialect();
    }
    default:
      throw new LockConfigError(
        `ormlock supports PostgreSQL, MySQL and MariaDB; this DataSource is '${type}'.`,
      );
  }
}
