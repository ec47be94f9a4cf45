import type { DataSource, QueryRunner } from 'typeorm';
import type { LockDialect } from '../../dialects/dialect';
import { badOption, notInitialized } from '../../faults/options';
import { installationOf, installationOwning } from '../../installations';
import { dataSourceName, dataSourceOf } from './compat';
import { TypeOrmPort } from './typeorm-port';

/**
 * Where a table helper (createFencingTable, createScheduledLockTable) runs its statements: a
 * TypeORM DataSource (at start-up: one pooled connection per statement), a migration's
 * QueryRunner (inside the migration's transaction), or any other installed ORM instance (a
 * MikroORM instance given to `installLocking`: its pool). Resolves the runner and the dialect.
 */
export async function tableTarget(target: unknown, where: string): Promise<{ run: (sql: string) => Promise<unknown>; dialect: LockDialect }> {
  const t = target as Partial<DataSource & QueryRunner> | undefined;
  let ds: DataSource | undefined;
  let run: (sql: string) => Promise<unknown>;
  if (t && typeof t.createQueryRunner === 'function') {
    ds = target as DataSource;
    run = async (sql) => {
      const qr = ds!.createQueryRunner();
      try {
        return await qr.query(sql);
      } finally {
        await qr.release();
      }
    };
  } else if (t && typeof t.query === 'function' && dataSourceOf(t)) {
    ds = dataSourceOf(t) as DataSource;
    run = (sql) => (target as QueryRunner).query(sql);
  } else {
    const inst = installationOwning(target);
    if (!inst) throw badOption(where, 'the target', "a TypeORM DataSource, a migration's QueryRunner, or an installed MikroORM instance", target);
    return { run: (sql) => inst.port.query(sql), dialect: inst.dialect };
  }
  if (!ds.isInitialized) throw notInitialized(where, `DataSource '${dataSourceName(ds)}'`);
  const dialect = installationOf(ds)?.dialect ?? (await new TypeOrmPort(ds).detectDialect());
  return { run, dialect };
}
