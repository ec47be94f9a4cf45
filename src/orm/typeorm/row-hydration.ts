import type { DataSource, EntityMetadata, QueryRunner, SelectQueryBuilder } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata';
import { DriverUtils } from 'typeorm/driver/DriverUtils';
import { RawSqlResultsToEntityTransformer } from 'typeorm/query-builder/transformer/RawSqlResultsToEntityTransformer';
import { Broadcaster } from 'typeorm/subscriber/Broadcaster';
import { BroadcasterResult } from 'typeorm/subscriber/BroadcasterResult';
import { expectMethod } from './internals/patch';

/**
 * Turns the row of a prepared locked read (locked-read.ts) into its entity the way TypeORM's
 * `RawSqlResultsToEntityTransformer` does for a builder that selects one whole entity and joins
 * nothing: `metadata.create(queryRunner, { fromDeserializer })`, then each selected column's
 * `setEntityValue(driver.prepareHydratedValue(value))` (transformers and embedded columns
 * included), keyed by the alias TypeORM itself builds. The Load event goes to TypeORM's own
 * `broadcastLoadEvent` (listeners, subscribers, loaded relations), and only when the entity has
 * a listener, a relation, or a subscriber with `afterLoad` that listens to it.
 *
 * What the column list, aliases and broadcast are worked out once per plan; the per-row work is
 * the loop. A shape it does not cover (joins, inheritance, virtual-property columns, relation
 * ids/counts) has no hydrator and the rows go through TypeORM's transformer.
 */
export type RowHydrator = (row: Record<string, unknown>, qr: QueryRunner) => object | null | Promise<object | null>;

/** True when the TypeORM loaded here still hydrates and broadcasts as this file expects (checked once). */
let shapeKnown: boolean | undefined;

function internalsAsExpected(): boolean {
  if (shapeKnown === undefined) {
    const transformer = RawSqlResultsToEntityTransformer?.prototype;
    const problems = [
      ...expectMethod(transformer, 'RawSqlResultsToEntityTransformer.prototype', 'transformColumns', ['setEntityValue', 'prepareHydratedValue']),
      ...expectMethod(transformer, 'RawSqlResultsToEntityTransformer.prototype', 'transformRawResultsGroup', ['fromDeserializer']),
      ...expectMethod(Broadcaster?.prototype, 'Broadcaster.prototype', 'broadcastLoadEvent', ['afterLoadListeners', 'afterLoad']),
      ...expectMethod(Broadcaster?.prototype, 'Broadcaster.prototype', 'isAllowedSubscriber', ['listenTo']),
      ...expectMethod(DriverUtils, 'DriverUtils', 'buildAlias'),
    ];
    shapeKnown = problems.length === 0 && typeof BroadcasterResult === 'function';
  }
  return shapeKnown;
}

/**
 * The hydrator of `qb` (the plan's builder: `select(alias).from(entity)`, no joins), or undefined
 * when its rows must go through TypeORM's transformer.
 */
export function rowHydrator(dataSource: DataSource, meta: EntityMetadata, qb: SelectQueryBuilder<any>, alias: string): RowHydrator | undefined {
  if (!internalsAsExpected()) return undefined;
  const map = qb.expressionMap as any;
  if (
    map.joinAttributes.length ||
    map.relationIdAttributes.length ||
    (map.relationCountAttributes?.length ?? 0) ||
    !map.selects.some((s: { selection: string }) => s.selection === alias) ||
    meta.discriminatorColumn ||
    meta.childEntityMetadatas.length ||
    (meta as { objectIdColumn?: unknown }).objectIdColumn ||
    meta.columns.some((c) => (c as { isVirtualProperty?: boolean }).isVirtualProperty)
  ) {
    return undefined;
  }
  const driver = dataSource.driver;
  const pojo = (map.options as string[]).includes('create-pojo');
  const columns: ColumnMetadata[] = meta.columns.filter((c) => !c.isVirtual);
  const keys = columns.map((c) => DriverUtils.buildAlias(driver, undefined, alias, c.databaseName));
  const options = { fromDeserializer: true, pojo };
  return (row, qr) => {
    const entity = meta.create(qr, options);
    let hasData = false;
    for (let i = 0; i < columns.length; i++) {
      const value = row[keys[i]];
      if (value === undefined) continue;
      if (value !== null) hasData = true;
      columns[i].setEntityValue(entity, driver.prepareHydratedValue(value, columns[i]));
    }
    // a row of NULLs is no entity (TypeORM's transformer drops it the same way)
    if (!hasData) return null;
    return hearsLoad(meta, qr) ? broadcastLoad(meta, qr, entity) : entity;
  };
}

/** Whether TypeORM's Load broadcast for `meta` would do anything: listeners, relations, or a subscriber with afterLoad for it. */
function hearsLoad(meta: EntityMetadata, qr: QueryRunner): boolean {
  if (meta.relations.length || meta.afterLoadListeners.length) return true;
  const broadcaster = qr.broadcaster as unknown as { isAllowedSubscriber(s: unknown, target: unknown): boolean };
  for (const subscriber of subscribersOf(qr)) {
    if (subscriber.afterLoad && broadcaster.isAllowedSubscriber(subscriber, meta.target)) return true;
  }
  return false;
}

function subscribersOf(qr: QueryRunner): ReadonlyArray<{ afterLoad?: unknown }> {
  const q = qr as { dataSource?: DataSource; connection?: DataSource };
  return (q.dataSource ?? q.connection)?.subscribers ?? [];
}

/** TypeORM's own Load broadcast of `entity` (what `broadcast('Load', …)` runs, without its per-call dispatch). */
function broadcastLoad(meta: EntityMetadata, qr: QueryRunner, entity: object): object | Promise<object> {
  const result = new BroadcasterResult();
  (qr.broadcaster as unknown as { broadcastLoadEvent(r: BroadcasterResult, m: EntityMetadata, e: object[]): void }).broadcastLoadEvent(result, meta, [entity]);
  return result.promises.length ? result.wait().then(() => entity) : entity;
}
