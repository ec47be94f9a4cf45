import type { DataSource } from 'typeorm';
import { notInspectableDataSource } from '../../faults/observe';
import type { ConnectionTarget } from '../../observe/connect';

/** The settings of a TypeORM DataSource, to open a connection of its own beside its pool. */
export function connectionTargetOf(dataSource: DataSource): ConnectionTarget {
  const o = dataSource.options as Record<string, any>;
  const family =
    o.type === 'postgres' || o.type === 'cockroachdb'
      ? 'postgres'
      : o.type === 'mysql' || o.type === 'mariadb' || o.type === 'aurora-mysql'
        ? 'mysql'
        : undefined;
  if (!family) throw notInspectableDataSource(o.type);
  // A replicated DataSource's writes go to the master: that is where the locks are.
  const c = (o.replication?.master ?? o) as Record<string, any>;
  return {
    family,
    url: c.url,
    host: c.host,
    port: c.port,
    user: c.username,
    password: c.password,
    database: c.database ?? o.database,
    ssl: c.ssl ?? o.ssl,
    socketPath: c.socketPath,
  };
}

/** True for a TypeORM DataSource (duck-typed, so that no TypeORM import is needed to tell). */
export function isTypeormDataSource(value: unknown): value is DataSource {
  const v = value as { options?: { type?: unknown }; query?: unknown; driver?: unknown } | null;
  return !!v && typeof v.query === 'function' && typeof v.options?.type === 'string' && v.driver !== undefined;
}
