import type { DataSource, QueryRunner } from 'typeorm';
import { ambientRunner } from '../../context/store';

/**
 * Binds `dataSource.manager`, `dataSource.query` and `dataSource.createQueryBuilder` to the
 * ambient transaction (or the connection pinned by a session lock). Returns the function that undoes it.
 */
export function bindDataSource(ds: DataSource): () => void {
  const target = ds as any;
  const baseManager = ds.manager;
  const baseQuery = target.query;
  const baseCreateQueryBuilder = target.createQueryBuilder;
  const hadOwnQuery = Object.prototype.hasOwnProperty.call(target, 'query');
  const hadOwnQb = Object.prototype.hasOwnProperty.call(target, 'createQueryBuilder');

  Object.defineProperty(target, 'manager', {
    configurable: true,
    enumerable: true,
    get: () => ambientRunner(ds)?.manager ?? baseManager,
  });
  target.query = function (sql: string, parameters?: unknown[], queryRunner?: QueryRunner) {
    return baseQuery.call(ds, sql, parameters, queryRunner ?? ambientRunner(ds)?.queryRunner);
  };
  target.createQueryBuilder = function (entityOrRunner?: unknown, alias?: string, queryRunner?: QueryRunner) {
    const tx = ambientRunner(ds);
    if (!tx) return baseCreateQueryBuilder.call(ds, entityOrRunner, alias, queryRunner);
    if (alias !== undefined) return baseCreateQueryBuilder.call(ds, entityOrRunner, alias, queryRunner ?? tx.queryRunner);
    return baseCreateQueryBuilder.call(ds, entityOrRunner ?? tx.queryRunner);
  };

  return () => {
    Object.defineProperty(target, 'manager', { configurable: true, enumerable: true, writable: true, value: baseManager });
    if (hadOwnQuery) target.query = baseQuery;
    else delete target.query;
    if (hadOwnQb) target.createQueryBuilder = baseCreateQueryBuilder;
    else delete target.createQueryBuilder;
  };
}
