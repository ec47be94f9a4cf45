import {
  helper,
  LockMode,
  Reference,
  ReferenceKind,
  RequestContext,
  TransactionContext,
  Utils,
  type EntityManager,
  type EntityMetadata,
  type MikroORM,
} from '@mikro-orm/core';
import { dialectFor, needsServerVersion } from '../../dialects';
import type { LockDialect, ServerAddress } from '../../dialects/dialect';
import type { RowLockSpec } from '../../locks/row-lock-options';
import type { EntityDescriptor, IsolationLevel, OrmPort, ParentLocation, PoolWait, PortConnection, PortTransaction } from '../port';
import { connectionFor, MikroOrmConnection, newRootState, questionMarks } from './connection';
import { OWNS_RAW, PINNED_RAW } from './internals/connection';
import { giveBack } from './internals/give-back';
import { handshakeIdOf } from '../pooler';
import { markedAliases } from './internals/reads';
import { installationFor } from './registry';
import { requireUniqueCover } from './unique-cover';
import { lostSignalOf } from '../lost-signal';
import { bareIdForCompositeKey, noSuchRelation, notAParentRelation, parentNotSaved } from '../../faults/parents';
import { notInstalled } from '../../faults/installations';
import { poolExhausted } from '../../faults/pool';
import { withinPoolWait } from '../pool-wait';

// No `declare module '../port'` augmentation of OrmManagerTypes here (yet): in a program that also
// loads the TypeORM adapter it turns OrmManager into a union, and currentManager().query(...) in
// TypeORM code stops type-checking. MikroORM users cast: `currentManager() as EntityManager`.

/** The MikroORM version in use (for messages). */
export function mikroOrmVersion(): string {
  try {
    return Utils.getORMVersion();
  } catch {
    return 'unknown';
  }
}

/** The MikroORM adapter of the ORM port, for one MikroORM instance. */
export class MikroOrmPort implements OrmPort {
  readonly orm = 'mikro-orm';
  readonly ormVersion = mikroOrmVersion();
  closed = false;
  private readonly descriptors = new WeakMap<object, EntityDescriptor>();

  constructor(readonly mikro: MikroORM) {}

  get target(): MikroORM {
    return this.mikro;
  }

  get defaultManager(): EntityManager {
    return this.mikro.em;
  }

  get label(): string {
    const c = this.mikro.config;
    return `MikroORM '${c.get('contextName') ?? 'default'}' (${this.family()}, ${c.get('dbName') ?? '?'})`;
  }

  get isLive(): boolean {
    return !this.closed;
  }

  owns(x: unknown): boolean {
    if (x === this.mikro) return true;
    if (x === null || typeof x !== 'object') return false;
    if (x instanceof MikroOrmConnection) return (x.manager as any).config === this.mikro.config;
    const config = this.mikro.config;
    const o = x as { config?: unknown; em?: { config?: unknown }; getEntityManager?: () => { config?: unknown } };
    if (o.config === config) return true; // an EntityManager (or fork), the driver …
    if (o.em?.config === config) return true; // an EntityRepository
    return false;
  }

  /**
   * The connection `x` names when it is one: an EntityManager of this instance with a transaction
   * of its own (a fork after `em.begin()`, or the `em` inside `em.transactional()`), or a
   * MikroOrmConnection. A `{ dataSource }` option naming it makes the call join that transaction.
   */
  connectionOf(x: unknown): PortConnection | undefined {
    if (x instanceof MikroOrmConnection) return this.owns(x) ? x : undefined;
    if (x === null || typeof x !== 'object' || x === this.mikro || !this.owns(x)) return undefined;
    const trx = typeof (x as EntityManager).getTransactionContext === 'function' ? (x as EntityManager).getTransactionContext() : undefined;
    return trx ? connectionFor(x as EntityManager, trx) : undefined;
  }

  private family(): string {
    const name = this.mikro.config.getDriver().constructor.name; // PostgreSqlDriver, MySqlDriver, MariaDbDriver
    if (/postgre/i.test(name)) return 'postgresql';
    if (/maria/i.test(name)) return 'mariadb';
    if (/mysql/i.test(name)) return 'mysql';
    return name;
  }

  private sqlConnection(): any {
    return this.mikro.em.getConnection('write');
  }

  // ---- connections ----------------------------------------------------------------------

  async begin(options: { isolation?: IsolationLevel; connection?: PortConnection } & PoolWait): Promise<PortTransaction> {
    const given = options.connection as MikroOrmConnection | undefined;
    const raw = given ? given.root.raw : await this.acquireRaw(options);
    const fork = this.mikro.em.fork({ clear: true });
    try {
      await fork.begin({
        isolationLevel: options.isolation?.toLowerCase() as any,
        [PINNED_RAW]: raw,
        [OWNS_RAW]: !given,
      } as any);
    } catch (error) {
      if (!given) await this.releaseRaw(raw);
      throw error;
    }
    const connection = connectionFor(fork, fork.getTransactionContext()!);
    return {
      connection,
      // commit flushes the fork first (the entity handed to withLock's callback is written here)
      commit: () => fork.commit(),
      rollback: () => fork.rollback(),
      release: async () => {
        // the patched commit/rollback gave the connection back; a transaction never ended gives it back here
        if (!connection.root.released && connection.root.ownsRaw) {
          connection.root.released = true;
          await this.giveBack(raw, connection.root);
        }
      },
    };
  }

  async connect(wait: PoolWait): Promise<PortTransaction> {
    const raw = await this.acquireRaw(wait);
    const root = newRootState(raw, true);
    const connection = new MikroOrmConnection(this.mikro.em.fork({ clear: true }), undefined, root);
    const none = () => Promise.resolve();
    return {
      connection,
      commit: none,
      rollback: none,
      release: async () => {
        if (root.released) return;
        root.released = true;
        await this.giveBack(raw, root);
      },
    };
  }

  lostSignal(connection: PortConnection): AbortSignal | undefined {
    return connection instanceof MikroOrmConnection ? lostSignalOf(connection.root.raw) : undefined;
  }

  /** A driver connection of the pool; with `waitMs`, the wait is bounded (PoolExhaustedError). */
  private async acquireRaw(wait: PoolWait): Promise<unknown> {
    const client = this.sqlConnection().getKnex().client;
    const acquiring: Promise<unknown> = client.acquireConnection();
    if (wait.waitMs === undefined) return acquiring;
    return withinPoolWait(
      acquiring,
      wait.waitMs,
      (late) =>
        late.then(
          (raw) => client.releaseConnection(raw),
          () => undefined,
        ),
      () => poolExhausted(wait.caller, this.label, wait.waitMs, wait.held, this.mikro.config.get('pool')?.max ?? 10, 'pool.max'),
    );
  }

  private releaseRaw(raw: unknown): Promise<void> {
    return this.sqlConnection().getKnex().client.releaseConnection(raw);
  }

  /** Back to the pool when the connection model says it is clean, else destroyed (internals/give-back.ts). */
  private giveBack(raw: unknown, root: object): Promise<void> {
    const connection = this.sqlConnection();
    return giveBack(connection, connection.getKnex().client, raw, root);
  }

  query(sql: string, parameters: unknown[] = []): Promise<any> {
    const { text, params } = questionMarks(sql, parameters);
    return this.sqlConnection().execute(text, params, 'all');
  }

  serverAddress(): ServerAddress {
    const c = this.mikro.config;
    const url = c.get('clientUrl');
    const family = this.family();
    return {
      family: family === 'postgresql' ? 'postgres' : family === 'mysql' || family === 'mariadb' ? 'mysql' : undefined,
      url: url || undefined,
      host: c.get('host'),
      port: c.get('port'),
      user: c.get('user'),
      password: typeof c.get('password') === 'string' ? (c.get('password') as string) : undefined,
      database: c.get('dbName'),
    };
  }

  handshakeBackendId(connection: PortConnection): number | undefined {
    return connection instanceof MikroOrmConnection ? handshakeIdOf(connection.root.raw) : undefined;
  }

  async detectDialect(): Promise<LockDialect> {
    const family = this.family();
    if (!needsServerVersion(family)) return dialectFor(family);
    const [row] = await this.query('SELECT VERSION() AS v');
    return dialectFor(family, String(row?.v));
  }

  /** Runs `fn` with the transaction's EntityManager as MikroORM's TransactionContext (global `orm.em`, `@Transactional`). */
  enter<T>(connection: PortConnection, fn: () => Promise<T> | T): Promise<T> | T {
    const em = (connection as MikroOrmConnection).manager;
    return TransactionContext.create(em, fn as () => Promise<T>);
  }

  /** Runs `fn` with a TransactionContext that has no transaction: the request's EntityManager, or a fresh fork. */
  leave<T>(fn: () => Promise<T> | T): Promise<T> | T {
    const em = RequestContext.getEntityManager(this.mikro.em.name) ?? this.mikro.em.fork();
    return TransactionContext.create(em, fn as () => Promise<T>);
  }

  // ---- entities -------------------------------------------------------------------------

  describe(target: Function): EntityDescriptor | undefined {
    if (typeof target !== 'function') return undefined;
    const meta = this.mikro.getMetadata().find(target.name);
    if (!meta || meta.class !== target || meta.virtual || meta.embeddable) return undefined;
    return this.descriptorOf(meta);
  }

  descriptorOf(meta: EntityMetadata): EntityDescriptor {
    let desc = this.descriptors.get(meta);
    if (!desc) {
      desc = {
        name: meta.className,
        table: meta.schema && meta.schema !== '*' ? `${meta.schema}.${meta.tableName}` : meta.tableName,
        target: meta.class as Function,
        primaryKeys: meta.primaryKeys as string[],
        meta,
      };
      this.descriptors.set(meta, desc);
    }
    return desc;
  }

  idOf(entity: EntityDescriptor, object: object): Record<string, unknown> {
    const where: Record<string, unknown> = {};
    for (const pk of metaOf(entity).primaryKeys) where[pk] = primaryValue((object as any)[pk]);
    return where;
  }

  /**
   * `em.findOne(…, { lockMode, refresh })` on the connection's EntityManager, with the dialect's clause
   * (see internals/reads.ts): the fresh entity is the one that EntityManager manages.
   */
  async lockedRead(connection: PortConnection, entity: EntityDescriptor, where: Record<string, unknown>, spec: RowLockSpec): Promise<object | null> {
    const em = (connection as MikroOrmConnection).manager;
    const inst = installationFor(em);
    if (!inst) throw notInstalled(`lock(${entity.name})`, 'this MikroORM instance', entity.name);
    return em.findOne(
      metaOf(entity).class,
      where as any,
      {
        lockMode: LockMode.PESSIMISTIC_WRITE,
        lockTableAliases: markedAliases(inst, spec, entity.name),
        refresh: true,
        populate: [],
        flushMode: 'commit',
        disableIdentityMap: false,
      } as any,
    );
  }

  /**
   * Copies the freshly read row into the user's entity. When the user's entity is managed by
   * another EntityManager than the transaction's (loaded outside), it is adopted by the
   * transaction's: that one manages it from now on, so changes made to it are flushed at commit.
   */
  refresh(entity: EntityDescriptor, target: object, fresh: object): void {
    if (target === fresh) return;
    const meta = metaOf(entity);
    for (const prop of meta.props) {
      if (prop.persist === false || prop.kind === ReferenceKind.ONE_TO_MANY || prop.kind === ReferenceKind.MANY_TO_MANY) continue;
      (target as any)[prop.name] = (fresh as any)[prop.name];
    }
    const freshWrapped = helper(fresh as any) as any;
    const em = freshWrapped.__em as EntityManager | undefined;
    if (!em) return;
    const targetWrapped = helper(target as any) as any;
    if (targetWrapped.__em === em) return;
    const uow = em.getUnitOfWork(false) as any;
    uow.getIdentityMap().delete(fresh);
    uow.merge(target);
  }

  columnsOf(entity: EntityDescriptor, where: Record<string, unknown>): Record<string, unknown> {
    const meta = metaOf(entity);
    const out: Record<string, unknown> = {};
    for (const [path, value] of Object.entries(where)) {
      const prop = meta.properties[path as never] as any;
      if (prop?.fieldNames?.length === 1) out[prop.fieldNames[0]] = value;
    }
    return out;
  }

  // ---- parents --------------------------------------------------------------------------

  parentEntity(entity: EntityDescriptor, relation: string): EntityDescriptor {
    return this.descriptorOf(parentProperty(metaOf(entity), relation).targetMeta!);
  }

  locateParent(entity: EntityDescriptor, name: string, object: object): ParentLocation {
    const meta = metaOf(entity);
    const prop = parentProperty(meta, name);
    const parentMeta = prop.targetMeta!;
    const parent = this.descriptorOf(parentMeta);
    const raw = (object as any)[name];
    const value = raw !== null && typeof raw === 'object' && Reference.isReference(raw) ? Reference.unwrapReference(raw as any) : raw;
    if (value !== null && typeof value === 'object') {
      const where: Record<string, unknown> = {};
      for (const pk of parentMeta.primaryKeys) where[pk] = primaryValue((value as any)[pk]);
      if (Object.values(where).some((v) => v === undefined || v === null)) {
        if (prop.cascade?.some((c: string) => c === 'persist' || c === 'all')) return { kind: 'new' };
        throw parentNotSaved(
          `lockParent('${name}') on ${meta.className}`,
          meta.className,
          parentMeta.className,
          `in '${name}'`,
          Object.keys(where),
          'persist',
          name,
        );
      }
      if (!helper(value as any).__managed && !helper(value as any).hasPrimaryKey()) return { kind: 'new' };
      return { kind: 'row', parent, where, object: value };
    }
    if (value !== null && value !== undefined) {
      if (parentMeta.primaryKeys.length !== 1) {
        throw bareIdForCompositeKey(`lockParent('${name}') on ${meta.className}`, meta.className, `'${name}' holds`, parentMeta.className, name);
      }
      return { kind: 'row', parent, where: { [parentMeta.primaryKeys[0]]: value } };
    }
    return { kind: 'none', nullable: Boolean(prop.nullable), hint: `set '${name}'` };
  }

  attachParent(entity: EntityDescriptor, name: string, object: object, parent: object): void {
    const prop = parentProperty(metaOf(entity), name);
    (object as any)[name] = prop.ref ? Reference.create(parent) : parent;
  }

  // ---- unique rows ----------------------------------------------------------------------

  repositoryTarget(x: unknown): Function | undefined {
    if (x === null || typeof x !== 'object' || !this.owns(x)) return undefined;
    const name = (x as { entityName?: unknown }).entityName;
    if (name === undefined) return undefined;
    const meta = this.mikro.getMetadata().find(Utils.className(name as any));
    return typeof meta?.class === 'function' ? meta.class : undefined;
  }

  requireUniqueCover(entity: EntityDescriptor, where: Record<string, unknown>, caller: string): void {
    requireUniqueCover(metaOf(entity), where, caller);
  }

  /** One INSERT (em.insert) on the connection's EntityManager; the entity is then managed by it. */
  async insertRow(connection: PortConnection | undefined, entity: EntityDescriptor, values: Record<string, unknown>): Promise<object> {
    const em = this.managerOn(connection);
    const meta = metaOf(entity);
    const row = em.create(meta.class, values as any, { persist: false, partial: true } as any);
    await em.insert(row as any);
    em.merge(row as any, { refresh: false, cascade: false, disableContextResolution: true } as any);
    return row;
  }

  findRow(connection: PortConnection | undefined, entity: EntityDescriptor, where: Record<string, unknown>, lock?: 'read'): Promise<object | null> {
    const em = this.managerOn(connection);
    // outside a transaction: on the primary, never a read replica (MikroORM's `replicas`)
    const options: Record<string, unknown> = { refresh: true, flushMode: 'commit', connectionType: 'write' };
    if (lock) options.lockMode = LockMode.PESSIMISTIC_READ;
    return em.findOne(metaOf(entity).class, where as any, options as any);
  }

  private managerOn(connection: PortConnection | undefined): EntityManager {
    return (connection as MikroOrmConnection | undefined)?.manager ?? this.mikro.em.fork({ clear: true });
  }
}

function metaOf(entity: EntityDescriptor): EntityMetadata<any> {
  return entity.meta as EntityMetadata<any>;
}

/** A primary-key value as a WHERE wants it: an entity (or reference) becomes its own primary key. */
function primaryValue(value: unknown): unknown {
  if (value !== null && typeof value === 'object') {
    const unwrapped = Reference.isReference(value) ? Reference.unwrapReference(value as any) : value;
    if (Utils.isEntity(unwrapped)) return helper(unwrapped as any).getPrimaryKey();
  }
  return value;
}

/** The property `lockParent('name')` locks through, or a LockConfigError saying why it cannot. */
export function parentProperty(meta: EntityMetadata<any>, name: string): any {
  const subject = `lockParent('${name}') on ${meta.className}`;
  const prop = (meta.properties as Record<string, any>)[name];
  const owners = Object.values(meta.properties as Record<string, any>)
    .filter((p) => p.kind === ReferenceKind.MANY_TO_ONE || (p.kind === ReferenceKind.ONE_TO_ONE && p.owner))
    .map((p) => `'${p.name}'`);
  if (!prop) {
    throw noSuchRelation(subject, meta.className, name, owners);
  }
  if (!(prop.kind === ReferenceKind.MANY_TO_ONE || (prop.kind === ReferenceKind.ONE_TO_ONE && prop.owner))) {
    const kind =
      prop.kind === ReferenceKind.SCALAR
        ? 'a scalar property'
        : `a ${prop.kind} relation${prop.kind === ReferenceKind.ONE_TO_ONE ? ' without the join column' : ''}`;
    throw notAParentRelation(subject, meta.className, name, kind, owners);
  }
  return prop;
}
