import { SelectQueryBuilder, type DataSource, type EntityMetadata, type QueryRunner } from 'typeorm';
import type { BoundedRowLock } from '../../dialects/dialect';
import type { RowLockSpec } from '../../locks/row-lock-options';
import { markLocked } from './internals/query-builder';
import { rowHydrator, type RowHydrator } from './row-hydration';

/**
 * The locked read by primary key, built once per entity and lock spec: TypeORM's own query
 * builder writes the statement (columns, soft-delete condition, the dialect's lock clause). The
 * row becomes its entity through the plan's hydrator (row-hydration.ts: TypeORM's own column
 * setters and value conversions, and its Load broadcast when the entity has anyone listening),
 * or, for a shape the hydrator does not cover, through TypeORM's `executeEntitiesAndRawResults`;
 * either way the object is the one `getOne()` would return, without building the SELECT or
 * TypeORM's transformer and loaders on every call. Where the wait limit can ride in the
 * statement (`boundedRowLock`), it does, at no extra statement.
 *
 * Entities whose shape needs more than one plain SELECT of their own table (inheritance, relation
 * ids or counts, a `query` relation load strategy) have no plan: the caller builds the read itself.
 */
export interface LockedReadPlan {
  /** The SQL with its positional parameters; `bounded` when it also sets and restores the wait limit. */
  readonly sql: string;
  /** The position of each primary-key value (in `primaryColumns` order) in the parameters. */
  readonly slots: readonly number[];
  readonly parameterCount: number;
  readonly bounded?: BoundedRowLock & { timeoutMs: number };
  /** The builder whose expression map the rows are turned into entities with (never run itself). */
  readonly qb: SelectQueryBuilder<any>;
  /** Turns the row into its entity directly, as TypeORM's transformer would (row-hydration.ts); undefined: the transformer does. */
  readonly hydrate?: RowHydrator;
}

const PARAM = 'ormlock_pk';
/** The column a bounded read selects besides the entity's: NULL in the row that stands for "no row". */
const FOUND = 'ormlock_found';
/** Distinct timeouts cached per entity beyond which plans are built per call (a bound on memory). */
const MAX_PLANS = 32;

/** The plans of one DataSource (one per TypeOrmPort). */
export class LockedReads {
  private readonly plans = new WeakMap<EntityMetadata, Map<string, LockedReadPlan | null>>();
  /** Per entity, the last spec object asked for and its plan (specs are shared objects: no key to build on the common path). */
  private readonly last = new WeakMap<EntityMetadata, { spec: RowLockSpec; plan: LockedReadPlan | null }>();

  constructor(private readonly dataSource: DataSource) {}

  /** The plan for `meta` and `spec`, or undefined when this read needs the query builder. */
  plan(meta: EntityMetadata, spec: RowLockSpec, bounded: BoundedRowLock | undefined): LockedReadPlan | undefined {
    const last = this.last.get(meta);
    if (last?.spec === spec) return last.plan ?? undefined;
    const plan = this.lookup(meta, spec, bounded);
    this.last.set(meta, { spec, plan });
    return plan ?? undefined;
  }

  private lookup(meta: EntityMetadata, spec: RowLockSpec, bounded: BoundedRowLock | undefined): LockedReadPlan | null {
    let perSpec = this.plans.get(meta);
    if (!perSpec) this.plans.set(meta, (perSpec = new Map()));
    const key = `${spec.mode}|${spec.onLocked}|${spec.timeoutMs ?? ''}`;
    let plan = perSpec.get(key);
    if (plan === undefined) {
      plan = eligible(meta) ? this.build(meta, spec, bounded) : null;
      if (perSpec.size < MAX_PLANS) perSpec.set(key, plan);
    }
    return plan;
  }

  /**
   * Runs the plan on `qr` for the primary-key values `keys` (in `primaryColumns` order): the
   * fresh entity, or null when no row matched.
   */
  async run(plan: LockedReadPlan, qr: QueryRunner, keys: readonly unknown[]): Promise<object | null> {
    const parameters = new Array<unknown>(plan.parameterCount);
    for (let i = 0; i < keys.length; i++) parameters[plan.slots[i]] = keys[i];
    if (plan.bounded) parameters[plan.parameterCount - 1] = plan.bounded.value(plan.bounded.timeoutMs);
    if (plan.hydrate) {
      const rows: any[] = await qr.query(plan.sql, parameters);
      const row = plan.bounded ? rows.find(found) : rows[0];
      return row ? plan.hydrate(row, qr) : null;
    }
    // a view of the shared builder for this call: its own runner, and the raw rows from the plan's statement
    const view = Object.create(plan.qb) as SelectQueryBuilder<any> & { loadRawResults(runner: QueryRunner): Promise<any[]> };
    (view as unknown as { queryRunner?: QueryRunner }).queryRunner = qr;
    view.loadRawResults = async (runner: QueryRunner) => {
      const rows: any[] = await runner.query(plan.sql, parameters);
      return plan.bounded ? rows.filter(found) : rows;
    };
    const { entities } = await (view as any).executeEntitiesAndRawResults(qr);
    return entities[0] ?? null;
  }

  private build(meta: EntityMetadata, spec: RowLockSpec, bounded: BoundedRowLock | undefined): LockedReadPlan | null {
    const named = `ormlock_${meta.tableName.replace(/\W/g, '_')}`;
    const alias = named.length <= 40 ? named : 'ormlock_row'; // short enough for every driver's alias limit
    // what DataSource.createQueryBuilder(target, alias) builds, bound to no connection (the plan is shared by every call)
    const qb = new SelectQueryBuilder<any>(this.dataSource).select(alias).from(meta.target, alias);
    if ((qb.expressionMap as { relationLoadStrategy?: string }).relationLoadStrategy === 'query') return null;
    const timeoutMs = spec.onLocked === 'wait' && bounded ? spec.timeoutMs : undefined;
    // a bounded read's "no row" is a row of NULLs: this column tells it from a row
    if (timeoutMs) qb.addSelect('1', FOUND);
    const sentinels = meta.primaryColumns.map((_, i) => ({ ormlockKey: i }));
    meta.primaryColumns.forEach((column, i) => qb.andWhere(`${alias}.${column.propertyPath} = :${PARAM}${i}`, { [`${PARAM}${i}`]: sentinels[i] }));
    markLocked(qb, spec);
    const [sql, parameters] = qb.getQueryAndParameters();
    const slots = sentinels.map((s) => parameters.indexOf(s));
    // anything but our keys among the parameters (a value TypeORM added): not a shape this plan knows
    if (slots.some((i) => i < 0) || parameters.length !== sentinels.length) return null;
    const hydrate = rowHydrator(this.dataSource, meta, qb, alias);
    if (timeoutMs && bounded) {
      return { sql: bounded.wrap(sql, parameters.length), slots, parameterCount: parameters.length + 1, bounded: { ...bounded, timeoutMs }, qb, hydrate };
    }
    return { sql, slots, parameterCount: parameters.length, qb, hydrate };
  }
}

/** A real row of a bounded read (not the row of NULLs that stands for "no row"). */
function found(row: Record<string, unknown>): boolean {
  return row[FOUND] !== null && row[FOUND] !== undefined;
}

/** True when one SELECT of the entity's own table, turned into entities by TypeORM, is all a read of it needs. */
function eligible(meta: EntityMetadata): boolean {
  return (
    meta.tableType === 'regular' &&
    !meta.inheritancePattern &&
    !meta.discriminatorColumn &&
    meta.childEntityMetadatas.length === 0 &&
    !meta.treeType &&
    meta.relationIds.length === 0 &&
    ((meta as { relationCounts?: unknown[] }).relationCounts?.length ?? 0) === 0 &&
    meta.primaryColumns.length > 0
  );
}
