import type { EntityManager } from 'typeorm';
import { dataSourceOf } from './compat';

/**
 * Runs `fn` with a manager whose reads go to the primary: `manager` itself when it is bound to a
 * connection (a transaction's), else a manager on a QueryRunner of mode 'master'. Without this, a
 * DataSource with `replication` sends a read outside a transaction to a replica, which may not yet
 * have the row a conflict or a version check is about.
 */
export async function onPrimary<T>(manager: EntityManager, fn: (manager: EntityManager) => Promise<T>): Promise<T> {
  if (manager.queryRunner && !manager.queryRunner.isReleased) return fn(manager);
  const qr = dataSourceOf(manager)!.createQueryRunner('master');
  try {
    return await fn(qr.manager);
  } finally {
    await qr.release();
  }
}
