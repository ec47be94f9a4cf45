import type { DataSource, QueryRunner } from 'typeorm';
import { ambientConnection } from '../../context/store';
import { LockConfigError } from '../../errors';
import type { Installation } from '../installations';

/**
 * Binds `dataSource.manager`, `dataSource.query` and `dataSource.createQueryBuilder` to the
 * ambient transaction of `inst` (or the connection pinned by a session lock). Returns the undo.
 */
export function bindDataSource(ds: DataSource, inst: Installation): () => void {
  const target = ds as any;
  const managerProperty = Object.getOwnPropertyDescriptor(target, 'manager');
  if (!managerProperty || !managerProperty.configurable) {
    throw new LockConfigError(`installLocking: ${inst.label}.manager is not a configurable own property in this TypeORM version; ormlock cannot bind it to the context.`);
  }
  const baseManager = ds.manager;
  // a manager captured before the transaction (`const em = ds.manager`, @InjectEntityManager):
  // TypeORM's save()/remove() run on `this.queryRunner ?? createQueryRunner()`, so its runner is the ambient one
  const managerTarget = baseManager as any;
  const runnerProperty = Object.getOwnPropertyDescriptor(managerTarget, 'queryRunner');
  if (runnerProperty && !runnerProperty.configurable) {
    throw new LockConfigError(`installLocking: ${inst.label}.manager.queryRunner is not configurable in this TypeORM version; ormlock cannot bind it to the context.`);
  }
  Object.defineProperty(managerTarget, 'queryRunner', {
    configurable: true,
    enumerable: true,
    get: () => ambientConnection(inst) ?? runnerProperty?.value,
  });
  const baseQuery = target.query;
  const baseCreateQueryBuilder = target.createQueryBuilder;
  const hadOwnQuery = Object.prototype.hasOwnProperty.call(target, 'query');
  const hadOwnQb = Object.prototype.hasOwnProperty.call(target, 'createQueryBuilder');

  Object.defineProperty(target, 'manager', {
    configurable: true,
    enumerable: true,
    get: () => ambientConnection(inst)?.manager ?? baseManager,
  });
  target.query = function (sql: string, parameters?: unknown[], queryRunner?: QueryRunner) {
    return baseQuery.call(ds, sql, parameters, queryRunner ?? (ambientConnection(inst) as QueryRunner | undefined));
  };
  target.createQueryBuilder = function (entityOrRunner?: unknown, alias?: string, queryRunner?: QueryRunner) {
    const connection = ambientConnection(inst) as QueryRunner | undefined;
    if (!connection) return baseCreateQueryBuilder.call(ds, entityOrRunner, alias, queryRunner);
    if (alias !== undefined) return baseCreateQueryBuilder.call(ds, entityOrRunner, alias, queryRunner ?? connection);
    return baseCreateQueryBuilder.call(ds, entityOrRunner ?? connection);
  };

  return () => {
    Object.defineProperty(target, 'manager', managerProperty);
    if (runnerProperty) Object.defineProperty(managerTarget, 'queryRunner', runnerProperty);
    else delete managerTarget.queryRunner;
    if (hadOwnQuery) target.query = baseQuery;
    else delete target.query;
    if (hadOwnQb) target.createQueryBuilder = baseCreateQueryBuilder;
    else delete target.createQueryBuilder;
  };
}
