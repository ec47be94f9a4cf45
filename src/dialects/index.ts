import { unsupportedDatabase } from '../faults/dialects';
import type { LockDialect, RunQuery } from './dialect';
import { MariaDbDialect } from './mysql/mariadb-dialect';
import { MysqlDialect } from './mysql/mysql-dialect';
import { PostgresDialect } from './postgres/postgres-dialect';

export type { LockDialect, DialectCapabilities, BeginWithStatement, ErrorContext, ServerAddress } from './dialect';
export { PostgresDialect, MysqlDialect, MariaDbDialect };

/** The database families ormlock has a dialect for, as adapters name them. */
export type DatabaseFamily = 'postgres' | 'mysql';

/**
 * Picks the dialect: the only place that looks at the database's name. Adapters give the
 * family their ORM reports and, for MySQL-protocol servers, the server's `VERSION()`, so a
 * MariaDB behind `type: 'mysql'` is still treated as MariaDB.
 */
export function dialectFor(family: string, serverVersion?: string): LockDialect {
  switch (family) {
    case 'postgres':
    case 'postgresql':
    case 'cockroachdb':
      return new PostgresDialect();
    case 'mysql':
    case 'mariadb':
    case 'aurora-mysql':
      return /mariadb/i.test(String(serverVersion)) ? new MariaDbDialect() : new MysqlDialect();
    default:
      throw unsupportedDatabase(family);
  }
}

/** True for families whose dialect depends on the server's VERSION() (MySQL vs MariaDB). */
export function needsServerVersion(family: string): boolean {
  return family === 'mysql' || family === 'mariadb' || family === 'aurora-mysql';
}

/** The dialect of a server of one protocol family, asking a MySQL-protocol server its version through `run`. */
export async function dialectForServer(family: 'postgres' | 'mysql', run: RunQuery): Promise<LockDialect> {
  if (!needsServerVersion(family)) return dialectFor(family);
  const [row] = await run('SELECT VERSION() AS v', []);
  return dialectFor(family, String(row?.v));
}
