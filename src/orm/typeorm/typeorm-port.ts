import { InstanceChecker, type DataSource, type EntityManager, type EntityMetadata, type ObjectLiteral, type QueryRunner } from 'typeorm';
type ColumnMetadata = EntityMetadata['columns'][number];
import type { RelationMetadata } from 'typeorm';
import { dialectFor, needsServerVersion } from '../../dialects';
import type { LockDialect, ServerAddress } from '../../dialects/dialect';
import type { RowLockSpec } from '../../locks/row-lock-options';
import type { EntityDescriptor, IsolationLevel, OrmPort, ParentLocation, PoolWait, PortConnection, PortTransaction } from '../port';
import { dataSourceOf, describeDataSource, typeormVersion } from './compat';
import { connectionTargetOf } from './connection-target';
import { markLocked } from './internals/query-builder';
import { LockedReads } from './locked-read';
import { startDeferred } from './internals/deferred-begin';
import { installationOf } from '../../installations';
import { handshakeIdOf } from '../pooler';
import { onPrimary } from './primary';
import { lostSignalOf } from '../lost-signal';
import { bareIdForCompositeKey, noSuchRelation, notAParentRelation, parentNotSaved } from '../../faults/parents';
import { noUniqueCover, whereEmpty, whereGenerated, whereNull, whereOperator, whereUnknown } from '../../faults/unique';
import { poolExhausted } from '../../faults/pool';
import { withinPoolWait } from '../pool-wait';

declare module '../port' {
  interface OrmManagerTypes {
    typeorm: EntityManager;
  }
  interface OrmConnectionTypes {
    typeorm: QueryRunner;
  }
}

/** The TypeORM adapter of the ORM port, for one DataSource. */
export class TypeOrmPort implements OrmPort {
  readonly orm = 'typeorm';
  readonly ormVersion = typeormVersion();
  /** The manager and query function of the DataSource itself (before ormlock bound them to the context). */
  readonly defaultManager: EntityManager;
  private readonly descriptors = new WeakMap<EntityMetadata, EntityDescriptor>();
  /** Locked reads by primary key, built once per entity and spec (src/orm/typeorm/locked-read.ts). */
  readonly lockedReads: LockedReads;

  constructor(readonly dataSource: DataSource) {
    this.defaultManager = dataSource.manager;
    this.lockedReads = new LockedReads(dataSource);
  }

  get target(): DataSource {
    return this.dataSource;
  }

  get label(): string {
    return describeDataSource(this.dataSource);
  }

  get isLive(): boolean {
    return this.dataSource.isInitialized;
  }

  owns(x: unknown): boolean {
    if (x === this.dataSource) return true;
    if (x === null || typeof x !== 'object') return false;
    if (dataSourceOf(x) === this.dataSource) return true;
    const manager = (x as { manager?: unknown }).manager; // a repository
    return manager !== undefined && dataSourceOf(manager) === this.dataSource;
  }

  connectionOf(x: unknown): PortConnection | undefined {
    if (x === null || typeof x !== 'object' || !this.owns(x)) return undefined;
    if (isQueryRunner(x)) return x;
    const runner = (x as { queryRunner?: unknown }).queryRunner; // a manager made for a runner (queryRunner.manager)
    return isQueryRunner(runner) && dataSourceOf(runner) === this.dataSource ? runner : undefined;
  }

  // ---- connections ----------------------------------------------------------------------

  async begin(options: { isolation?: IsolationLevel; connection?: PortConnection } & PoolWait): Promise<PortTransaction> {
    const given = options.connection as QueryRunner | undefined;
    let qr: QueryRunner;
    if (given) qr = given;
    else if (options.waitMs === undefined) {
      // connectRunner's unbounded path, without one more async function per transaction
      qr = this.dataSource.createQueryRunner();
      try {
        await qr.connect();
      } catch (error) {
        await qr.release().catch(() => undefined);
        throw error;
      }
    } else qr = await this.connectRunner(options);
    try {
      // a transaction of its own on a database whose BEGIN can ride with the next statement: held for it (deferred-begin.ts)
      const dialect = given ? undefined : installationOf(this.dataSource)?.dialect;
      if (dialect?.capabilities.beginRidesWithStatement && dialect.beginWithStatement) await startDeferred(qr, options.isolation, dialect.beginWithStatement);
      else await qr.startTransaction(options.isolation);
    } catch (error) {
      if (!given) await qr.release().catch(() => undefined);
      throw error;
    }
    return {
      connection: qr,
      commit: () => qr.commitTransaction(),
      rollback: () => qr.rollbackTransaction(),
      release: () => (given ? Promise.resolve() : qr.release()),
    };
  }

  async connect(wait: PoolWait): Promise<PortTransaction> {
    const qr = await this.connectRunner(wait);
    const none = () => Promise.resolve();
    return { connection: qr, commit: none, rollback: none, release: () => qr.release() };
  }

  lostSignal(connection: PortConnection): AbortSignal | undefined {
    // the driver connection of a connected QueryRunner (pg Client, mysql2 Connection): public on each driver's runner
    return lostSignalOf((connection as { databaseConnection?: unknown }).databaseConnection);
  }

  /** A connected QueryRunner; with `waitMs`, the wait for the pool is bounded (PoolExhaustedError). */
  private async connectRunner(wait: PoolWait): Promise<QueryRunner> {
    const qr = this.dataSource.createQueryRunner();
    const connecting = qr.connect();
    if (wait.waitMs === undefined) {
      try {
        await connecting;
        return qr;
      } catch (error) {
        await qr.release().catch(() => undefined);
        throw error;
      }
    }
    await withinPoolWait(
      connecting,
      wait.waitMs,
      // the connection may still come: give it back when it does
      (late) =>
        late
          .then(
            () => qr.release(),
            () => qr.release(),
          )
          .catch(() => undefined),
      () => poolExhausted(wait.caller, this.label, wait.waitMs, wait.held, this.poolSize(), 'poolSize'),
    );
    return qr;
  }

  private poolSize(): number {
    const o = this.dataSource.options as { poolSize?: number; extra?: { max?: number; connectionLimit?: number } };
    return o.poolSize ?? o.extra?.max ?? o.extra?.connectionLimit ?? 10;
  }

  query(sql: string, parameters?: unknown[]): Promise<any> {
    // the DataSource's own query, not the one ormlock bound to the ambient transaction
    const base = Object.getPrototypeOf(this.dataSource).query as DataSource['query'];
    return base.call(this.dataSource, sql, parameters);
  }

  serverAddress(): ServerAddress {
    const t = connectionTargetOf(this.dataSource);
    return { family: t.family, url: t.url, host: t.host, port: t.port, user: t.user, password: t.password, database: t.database };
  }

  handshakeBackendId(connection: PortConnection): number | undefined {
    return handshakeIdOf((connection as { databaseConnection?: unknown }).databaseConnection);
  }

  async detectDialect(): Promise<LockDialect> {
    const family = this.dataSource.driver.options.type;
    if (!needsServerVersion(family)) return dialectFor(family);
    const [row] = await this.query('SELECT VERSION() AS v');
    return dialectFor(family, String(row?.v));
  }

  // ---- entities -------------------------------------------------------------------------

  describe(target: Function): EntityDescriptor | undefined {
    if (typeof target !== 'function' || !this.dataSource.hasMetadata(target)) return undefined;
    return this.descriptorOf(this.dataSource.getMetadata(target));
  }

  describeObject(object: object): EntityDescriptor | undefined {
    const meta = schemaEntityOf(object);
    return meta && this.dataSource.hasMetadata(meta.target) && this.dataSource.getMetadata(meta.target) === meta ? this.descriptorOf(meta) : undefined;
  }

  /** The descriptor of TypeORM metadata (cached). */
  descriptorOf(meta: EntityMetadata): EntityDescriptor {
    let desc = this.descriptors.get(meta);
    if (!desc) {
      desc = {
        name: meta.name,
        table: meta.tablePath,
        target: meta.target as Function,
        primaryKeys: meta.primaryColumns.map((c) => c.propertyPath),
        meta,
      };
      this.descriptors.set(meta, desc);
    }
    return desc;
  }

  idOf(entity: EntityDescriptor, object: object): Record<string, unknown> {
    const where: Record<string, unknown> = {};
    for (const c of metaOf(entity).primaryColumns) where[c.propertyPath] = c.getEntityValue(object);
    return where;
  }

  async lockedRead(connection: PortConnection, entity: EntityDescriptor, where: Record<string, unknown>, spec: RowLockSpec): Promise<object | null> {
    const meta = metaOf(entity);
    const qr = connection as QueryRunner;
    const plan = this.pkPlan(meta, spec, where);
    if (plan)
      return this.lockedReads.run(
        plan,
        qr,
        meta.primaryColumns.map((c) => where[c.propertyPath]),
      );
    const alias = `ormlock_${meta.tableName.replace(/\W/g, '_')}`;
    const qb = qr.manager.createQueryBuilder(meta.target, alias);
    Object.entries(where).forEach(([path, value], i) => {
      qb.andWhere(`${alias}.${path} = :ormlock_p${i}`, { [`ormlock_p${i}`]: value });
    });
    markLocked(qb, spec);
    return qb.getOne();
  }

  boundsWait(entity: EntityDescriptor, spec: RowLockSpec, where: Record<string, unknown>): boolean {
    return this.pkPlan(metaOf(entity), spec, where)?.bounded !== undefined;
  }

  /** The prepared read when `where` is exactly the primary key (see locked-read.ts). */
  private pkPlan(meta: EntityMetadata, spec: RowLockSpec, where: Record<string, unknown>) {
    const columns = meta.primaryColumns;
    let n = 0;
    for (const key in where) {
      if (columns[n]?.propertyPath !== key) return undefined;
      n++;
    }
    if (n !== columns.length) return undefined;
    return this.lockedReads.plan(meta, spec, installationOf(this.dataSource)?.dialect.boundedRowLock);
  }

  refresh(entity: EntityDescriptor, target: object, fresh: object): void {
    for (const column of metaOf(entity).columns) {
      if (column.isVirtual) continue;
      column.setEntityValue(target, column.getEntityValue(fresh));
    }
  }

  columnsOf(entity: EntityDescriptor, where: Record<string, unknown>): Record<string, unknown> {
    const meta = metaOf(entity);
    const byColumn: Record<string, unknown> = {};
    for (const [path, value] of Object.entries(where)) {
      const column = meta.findColumnWithPropertyPath(path);
      if (column) byColumn[column.databaseName] = value;
    }
    return byColumn;
  }

  // ---- parents --------------------------------------------------------------------------

  parentEntity(entity: EntityDescriptor, relation: string): EntityDescriptor {
    return this.descriptorOf(parentRelation(metaOf(entity), relation).inverseEntityMetadata);
  }

  locateParent(entity: EntityDescriptor, name: string, object: object): ParentLocation {
    const meta = metaOf(entity);
    const relation = parentRelation(meta, name);
    const parentMeta = relation.inverseEntityMetadata;
    const parent = this.descriptorOf(parentMeta);
    const value = relation.getEntityValue(object);
    const where: Record<string, unknown> = {};
    if (value !== null && typeof value === 'object') {
      for (const jc of relation.joinColumns) where[jc.referencedColumn!.propertyPath] = jc.referencedColumn!.getEntityValue(value);
      if (Object.values(where).some((v) => v === undefined || v === null)) {
        if (relation.isCascadeInsert) return { kind: 'new' };
        throw parentNotSaved(`lockParent('${name}') on ${meta.name}`, meta.name, parentMeta.name, `in '${name}'`, Object.keys(where), 'save', name);
      }
      return { kind: 'row', parent, where, object: value };
    }
    if (value !== null && value !== undefined) {
      if (relation.joinColumns.length !== 1) {
        throw bareIdForCompositeKey(`lockParent('${name}') on ${meta.name}`, meta.name, `'${name}' holds`, parentMeta.name, name);
      }
      return { kind: 'row', parent, where: { [relation.joinColumns[0].referencedColumn!.propertyPath]: value } };
    }
    if (value === undefined) {
      for (const jc of relation.joinColumns) {
        const v = joinColumnValue(object, meta, relation, jc);
        if (v === undefined || v === null) break;
        where[jc.referencedColumn!.propertyPath] = v;
      }
      if (Object.keys(where).length === relation.joinColumns.length) return { kind: 'row', parent, where };
    }
    const columns = relation.joinColumns
      .map((jc) => meta.columns.find((c) => c.databaseName === jc.databaseName && c.propertyName !== relation.propertyName)?.propertyName)
      .filter(Boolean);
    return {
      kind: 'none',
      // nullable when the relation and every column behind its join columns allow NULL
      nullable:
        relation.isNullable && relation.joinColumns.every((jc) => meta.columns.filter((c) => c.databaseName === jc.databaseName).every((c) => c.isNullable)),
      hint: `set '${name}'${columns.length ? ` or '${columns.join("', '")}'` : ''}`,
    };
  }

  attachParent(entity: EntityDescriptor, name: string, object: object, parent: object): void {
    const relation = parentRelation(metaOf(entity), name);
    if (!relation.isLazy) relation.setEntityValue(object, parent);
  }

  // ---- unique rows ----------------------------------------------------------------------

  repositoryTarget(x: unknown): Function | undefined {
    if (x === null || typeof x !== 'object' || !this.owns(x)) return undefined;
    const meta = (x as { metadata?: EntityMetadata }).metadata;
    return meta && typeof meta.target === 'function' ? meta.target : undefined;
  }

  requireUniqueCover(entity: EntityDescriptor, where: Record<string, unknown>, caller: string): void {
    requireUniqueCoverage(metaOf(entity), where, caller);
  }

  async insertRow(connection: PortConnection | undefined, entity: EntityDescriptor, values: Record<string, unknown>): Promise<object> {
    const manager = this.managerOn(connection);
    const meta = metaOf(entity);
    const row = manager.create(meta.target, values) as ObjectLiteral;
    await manager.createQueryBuilder().insert().into(meta.target).values(row).execute();
    return row;
  }

  /** Outside a transaction the read runs on the primary (a DataSource with `replication` would send it to a replica). */
  findRow(connection: PortConnection | undefined, entity: EntityDescriptor, where: Record<string, unknown>, lock?: 'read'): Promise<object | null> {
    const target = metaOf(entity).target;
    return onPrimary(this.managerOn(connection), (manager) =>
      lock ? manager.findOne(target, { where: where as never, lock: { mode: 'pessimistic_read' } }) : manager.findOneBy(target, where as never),
    );
  }

  private managerOn(connection: PortConnection | undefined): EntityManager {
    return (connection as QueryRunner | undefined)?.manager ?? this.defaultManager;
  }
}

function isQueryRunner(x: unknown): x is QueryRunner {
  const o = x as Partial<QueryRunner> | null;
  return (
    o !== null &&
    typeof o === 'object' &&
    typeof o.startTransaction === 'function' &&
    typeof o.commitTransaction === 'function' &&
    typeof o.release === 'function' &&
    'isReleased' in o
  );
}

function metaOf(entity: EntityDescriptor): EntityMetadata {
  return entity.meta as EntityMetadata;
}

/** The relation `lockParent('name')` locks through, or a LockConfigError saying why it cannot. */
export function parentRelation(meta: EntityMetadata, name: string): RelationMetadata {
  const subject = `lockParent('${name}') on ${meta.name}`;
  const relation = meta.findRelationWithPropertyPath(name);
  const owners = () => meta.relations.filter((r) => r.isManyToOne || r.isOneToOneOwner).map((r) => `'${r.propertyPath}'`);
  if (!relation) throw noSuchRelation(subject, meta.name, name, owners());
  if (!(relation.isManyToOne || relation.isOneToOneOwner) || relation.joinColumns.length === 0) {
    throw notAParentRelation(subject, meta.name, name, `a ${relation.relationType} relation${relation.isOneToOne ? ' without the join column' : ''}`, owners());
  }
  return relation;
}

/**
 * The value of a join column when the relation property is empty: the user's own column that
 * doubles as the join column (`@Column() siteId` + `@JoinColumn({ name: 'siteId' })`).
 */
function joinColumnValue(entity: object, meta: EntityMetadata, relation: RelationMetadata, jc: RelationMetadata['joinColumns'][number]): unknown {
  const own = meta.columns.find((c) => c.databaseName === jc.databaseName && c.propertyName !== relation.propertyName && !c.isVirtual);
  if (own) return own.getEntityValue(entity);
  if (jc.propertyName !== relation.propertyName) return jc.getEntityValue(entity);
  return undefined;
}

/** Per entity: which where-column sets (sorted database names joined by ',') a unique key covers. */
const coverage = new WeakMap<EntityMetadata, Map<string, boolean>>();

/**
 * Throws LockConfigError unless a unique constraint, unique index (not partial) or the primary key
 * has all its columns among `where`'s: only then can the database refuse a duplicate.
 */
function requireUniqueCoverage(metadata: EntityMetadata, where: ObjectLiteral, caller: string): void {
  const columns = whereColumns(metadata, where, caller);
  const key = columns
    .map((c) => c.databaseName)
    .sort()
    .join(',');
  let known = coverage.get(metadata);
  if (!known) coverage.set(metadata, (known = new Map()));
  let covered = known.get(key);
  if (covered === undefined) {
    const keys: ColumnMetadata[][] = [
      metadata.primaryColumns,
      ...metadata.uniques.map((u) => u.columns),
      ...metadata.indices.filter((i) => i.isUnique && !i.where).map((i) => i.columns),
    ];
    const set = new Set(columns);
    covered = keys.some((k) => k.length > 0 && k.every((c) => set.has(c)));
    known.set(key, covered);
  }
  if (!covered) {
    const names = columns.map((c) => c.propertyPath);
    throw noUniqueCover(caller, metadata.name, names, `@Unique([${names.map((n) => `'${n}'`).join(', ')}]) on the class or @Column({ unique: true })`);
  }
}

function whereColumns(metadata: EntityMetadata, where: ObjectLiteral, caller: string, prefix = ''): ColumnMetadata[] {
  const out: ColumnMetadata[] = [];
  const keys = Object.keys(where);
  if (keys.length === 0 && !prefix) throw whereEmpty(caller, metadata.name);
  for (const key of keys) {
    const path = prefix + key;
    const value = where[key];
    if (value === undefined || value === null) {
      throw whereNull(caller, metadata.name, path, value);
    }
    if (InstanceChecker.isFindOperator(value)) {
      throw whereOperator(caller, metadata.name, path);
    }
    const direct = metadata.findColumnsWithPropertyPath(path);
    const generated = direct.find((c) => c.isGenerated);
    if (generated) {
      throw whereGenerated(caller, metadata.name, path, 'findOneBy');
    }
    if (direct.length) {
      out.push(...direct);
      continue;
    }
    if (metadata.findEmbeddedWithPropertyPath(path) && typeof value === 'object' && !(value instanceof Date)) {
      out.push(...whereColumns(metadata, value, caller, `${path}.`));
      continue;
    }
    throw whereUnknown(caller, metadata.name, path, 'column or relation');
  }
  return out;
}

/** Objects of EntitySchema entities without `target` (plain objects) → the metadata TypeORM loaded or saved them as. */
const schemaEntities = new WeakMap<object, EntityMetadata>();

/** Remembers the entity of a plain object TypeORM loaded or saved (the core subscriber calls this). */
export function noteSchemaEntity(object: unknown, meta: EntityMetadata | undefined): void {
  if (meta && typeof meta.target !== 'function' && object !== null && typeof object === 'object') schemaEntities.set(object, meta);
}

function schemaEntityOf(object: object): EntityMetadata | undefined {
  return schemaEntities.get(object);
}
