import type { DataSource } from 'typeorm';
import { LockConfigError } from '../../errors';
import { registerLeaseDatabaseResolver, type LeaseDatabase } from '../../redis/lease-database';
import { installationOf } from './installations';

/**
 * The one place where a Redlock's `{ dataSource }` becomes "run this statement on that database,
 * with its dialect": the DataSource must be installed (`installLocking`). The statement runs on
 * a query runner of its own (not the ambient transaction's: a token must never be rolled back),
 * released at once.
 */
export function typeormLeaseDatabase(handle: unknown, where: string): LeaseDatabase | undefined {
  if (typeof (handle as DataSource | undefined)?.createQueryRunner !== 'function') return undefined;
  const ds = handle as DataSource;
  const inst = installationOf(ds);
  if (!inst) {
    throw new LockConfigError(
      `${where}: ormlock is not installed on this DataSource (${ds.options.type}${ds.options.database ? ` ${String(ds.options.database)}` : ''}): ` +
        'call `await installLocking(dataSource)` after `dataSource.initialize()`, before using it for fencing tokens or lease transactions',
    );
  }
  return {
    dialect: inst.dialect,
    label: `TypeORM DataSource (${ds.options.type})`,
    run: async (sql, parameters) => {
      const qr = ds.createQueryRunner();
      try {
        return await qr.query(sql, parameters);
      } finally {
        await qr.release();
      }
    },
  };
}

registerLeaseDatabaseResolver(typeormLeaseDatabase);
