import type { DataSource, QueryRunner } from 'typeorm';
import { ambientConnection } from '../../context/store';
import type { Installation } from '../../installations';
import { expectMethod } from './internals/patch';

/**
 * The binding of a DataSource to the context: `dataSource.manager`, `dataSource.query` and
 * `dataSource.createQueryBuilder` (and the base manager's `queryRunner`) follow the ambient
 * transaction of the installation (or the connection pinned by a session lock). Like every patch
 * of TypeORM internals, it has a probe: installLocking runs it before anything is applied and
 * throws the probe error naming what differs (src/orm/typeorm/internals/patch.ts).
 */

/** The problems with the shape the binding relies on (empty when it is as expected), each named by what it concerns. */
export function dataSourceBindingProblems(ds: DataSource): Array<{ patch: string; problem: string }> {
  const problems: Array<{ patch: string; problem: string }> = [];
  const note = (patch: string, found: string[]) => found.forEach((problem) => problems.push({ patch, problem }));
  const managerProperty = Object.getOwnPropertyDescriptor(ds, 'manager');
  if (!managerProperty || !managerProperty.configurable || !('value' in managerProperty)) {
    note('DataSource.manager', ['is not a configurable own property holding the EntityManager']);
  } else {
    const manager = managerProperty.value as object;
    const runnerProperty = Object.getOwnPropertyDescriptor(manager, 'queryRunner');
    if (runnerProperty && !runnerProperty.configurable) note('EntityManager.queryRunner', ['is not configurable']);
    // a manager captured before the transaction: its save()/remove() run on `this.queryRunner`, bound to the ambient one
    note('EntityManager.prototype.save', expectMethod(manager, 'EntityManager', 'save', ['this.queryRunner']));
  }
  note('DataSource.prototype.query', expectMethod(ds, 'DataSource', 'query', ['queryRunner', 'createQueryRunner']));
  note('DataSource.prototype.createQueryBuilder', expectMethod(ds, 'DataSource', 'createQueryBuilder', ['alias', 'queryRunner', 'SelectQueryBuilder']));
  return problems;
}

/** Binds `ds` to the context of `inst` (dataSourceBindingProblems(ds) must be empty). Returns the undo. */
export function bindDataSource(ds: DataSource, inst: Installation): () => void {
  const target = ds as any;
  const managerProperty = Object.getOwnPropertyDescriptor(target, 'manager')!;
  const baseManager = ds.manager;
  const managerTarget = baseManager as any;
  const runnerProperty = Object.getOwnPropertyDescriptor(managerTarget, 'queryRunner');
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
