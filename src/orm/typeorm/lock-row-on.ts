import type { EntityMetadata, QueryRunner } from 'typeorm';
import { lockRowOn as lockRowWith } from '../../locks/row-lock';
import type { RowLockOptions } from '../../locks/row-lock-options';
import { installationOf } from '../../installations';
import { dataSourceOf } from './compat';
import type { TypeOrmPort } from './typeorm-port';
import { notInstalled } from '../../faults/installations';

/**
 * Locks one row of `meta` (`where`: property paths to values) on `queryRunner`, inside its open
 * transaction, and returns it freshly read, or null when no row matches: the building block of
 * `lock()` and `lockParent`, for hooks of your own (`@AroundCreate(async (e, { queryRunner }) => …)`).
 */
export function lockRowOn<T = object>(
  queryRunner: QueryRunner,
  meta: EntityMetadata,
  where: Record<string, unknown>,
  options: RowLockOptions,
  subject: string,
): Promise<T | null> {
  const inst = installationOf(dataSourceOf(queryRunner));
  if (!inst) {
    return Promise.reject(notInstalled(subject, 'this DataSource', meta.name));
  }
  const entity = (inst.port as TypeOrmPort).descriptorOf(meta);
  return lockRowWith(inst, queryRunner, entity, where, options, subject, 'row') as Promise<T | null>;
}
