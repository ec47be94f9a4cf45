/**
 * The ORM port: the one interface the strategies (src/locks), the context (src/context), the
 * dialects (src/dialects) and src/redis talk to. An adapter (src/orm/typeorm, src/orm/mikro-orm)
 * implements it for one ORM; nothing outside the adapters imports an ORM.
 *
 * Connections are structural: a TypeORM QueryRunner is a `PortConnection` as it is; the MikroORM
 * adapter wraps its transaction context in one.
 */
import type { LockDialect } from '../dialects/dialect';
import type { RowLockSpec } from '../locks/row-lock-options';
import type { PortConnection } from './port-connection';

export type { PortConnection } from './port-connection';

/**
 * The ORM-specific public types of what ormlock hands to user code (a manager, a connection).
 * Each adapter adds one key by declaration merging (`typeorm: EntityManager`, …), so user code
 * sees its own ORM's types without the strategies importing any ORM.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface OrmManagerTypes {}
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface OrmConnectionTypes {}
type Pick1<T> = keyof T extends never ? any : T[keyof T];
/** The manager of the ORM(s) in use: TypeORM's EntityManager, MikroORM's EntityManager. */
export type OrmManager = Pick1<OrmManagerTypes>;
/** The connection handle of the ORM(s) in use: TypeORM's QueryRunner, MikroORM's wrapper. */
export type OrmConnection = Pick1<OrmConnectionTypes>;

/** Transaction isolation, as both ORMs spell it. */
export type IsolationLevel = 'READ UNCOMMITTED' | 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE';

/** What a strategy knows of an entity class (from the ORM's metadata). */
export interface EntityDescriptor {
  /** Entity name, for messages. */
  readonly name: string;
  /** Table (schema-qualified where the ORM says so), for messages and lock inspection. */
  readonly table: string;
  readonly target: Function;
  /** Primary-key property paths. */
  readonly primaryKeys: readonly string[];
  /** The adapter's own metadata object. */
  readonly meta: unknown;
}

/** Where the parent of a new entity is, as `lockParent` needs it. */
export type ParentLocation =
  /** The entity names no parent. `nullable`: the relation allows that. */
  | { readonly kind: 'none'; readonly nullable: boolean; readonly hint: string }
  /** A parent created in this same write (cascade): nobody else can see it yet. */
  | { readonly kind: 'new' }
  /** The parent row: its entity, primary-key values, and the object the entity holds, if any. */
  | { readonly kind: 'row'; readonly parent: EntityDescriptor; readonly where: Record<string, unknown>; readonly object?: object };

/** A unit of work the port opened (a transaction on a connection of its own or a given one). */
export interface PortTransaction {
  readonly connection: PortConnection;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  /** Gives the connection back (when the port took it from the pool). */
  release(): Promise<void>;
}

/**
 * A bound on waiting for a pool connection: set when the caller already holds `held` connections
 * of this ORM instance, so waiting without end could deadlock the pool. Past `waitMs` the port
 * throws PoolExhaustedError naming the pool size, `held` and `caller`.
 */
export interface PoolWait {
  waitMs?: number;
  held?: number;
  caller?: string;
}

/** The adapter of one ORM instance (a TypeORM DataSource, a MikroORM instance). */
export interface OrmPort {
  /** 'typeorm' | 'mikro-orm'. */
  readonly orm: string;
  /** The ORM's version, for messages. */
  readonly ormVersion: string;
  /** The object the user installed on (DataSource, MikroORM). */
  readonly target: object;
  /** How people name it in messages: `DataSource 'default' (postgres, test)`. */
  readonly label: string;
  /** False once the ORM was destroyed/closed. */
  readonly isLive: boolean;

  /** True when `x` (a DataSource, manager, connection, repository …) belongs to this ORM instance. */
  owns(x: unknown): boolean;
  /**
   * The connection `x` names when it is one (a TypeORM QueryRunner, or a manager bound to one)
   * of this ORM instance: a `{ dataSource }` option naming it makes the call run on it (joining a
   * transaction the user opened on it by hand). Undefined for a DataSource, a plain manager, ….
   */
  connectionOf?(x: unknown): PortConnection | undefined;

  /** Opens a transaction: on `connection` when given (a pinned one), else on a new pool connection. */
  begin(options: { isolation?: IsolationLevel; connection?: PortConnection } & PoolWait): Promise<PortTransaction>;
  /** A pool connection of its own, no transaction (for session locks); `release` gives it back. */
  connect(options: PoolWait): Promise<PortTransaction>;
  /** Runs one statement on the pool (no ambient connection). */
  query(sql: string, parameters?: unknown[]): Promise<any>;
  /** The default (non-transactional) manager. */
  readonly defaultManager: any;

  /** The entity class's descriptor, or undefined when the ORM instance does not know it. */
  describe(target: Function): EntityDescriptor | undefined;
  /** The descriptor of an entity object whose class does not name its entity (a TypeORM EntitySchema without `target`), when known. */
  describeObject?(object: object): EntityDescriptor | undefined;
  /** Primary-key values of an entity object (undefined where unset). */
  idOf(entity: EntityDescriptor, object: object): Record<string, unknown>;
  /**
   * One locking read: `SELECT … <the dialect's lock clause>` of the row of `entity` matching
   * `where` (property paths), on `connection`, inside its open transaction. Resolves the fresh
   * entity, or null when no row matches.
   */
  lockedRead(connection: PortConnection, entity: EntityDescriptor, where: Record<string, unknown>, spec: RowLockSpec): Promise<object | null>;
  /**
   * True when `lockedRead` of this entity, spec and keys bounds its wait itself, in its one
   * statement (the dialect's `boundedRowLock`): the strategy then sends no statement for the limit.
   */
  boundsWait?(entity: EntityDescriptor, spec: RowLockSpec, where: Record<string, unknown>): boolean;
  /** Copies the freshly read columns into the user's object (Rails' reload). */
  refresh(entity: EntityDescriptor, target: object, fresh: object): void;

  /** Checks that `relation` can be a parent relation of `entity`; throws LockConfigError naming both otherwise. */
  parentEntity(entity: EntityDescriptor, relation: string): EntityDescriptor;
  /** Where the parent of a new `object` is, through `relation`. */
  locateParent(entity: EntityDescriptor, relation: string, object: object): ParentLocation;
  /** Puts the reloaded parent on the relation property when it was empty. */
  attachParent(entity: EntityDescriptor, relation: string, object: object, parent: object): void;

  /** The entity class a repository of this ORM instance is for, or undefined when `x` is none. */
  repositoryTarget?(x: unknown): Function | undefined;
  /** Throws LockConfigError unless a unique key covers `where`'s columns (createOrFind). */
  requireUniqueCover(entity: EntityDescriptor, where: Record<string, unknown>, caller: string): void;
  /** Inserts one row of `entity` with `values` on `connection` (or the pool); resolves the object inserted. */
  insertRow(connection: PortConnection | undefined, entity: EntityDescriptor, values: Record<string, unknown>): Promise<object>;
  /** Reads one row of `entity` (`lock: 'read'`: a locking read, which MySQL reads current, not from the snapshot). */
  findRow(connection: PortConnection | undefined, entity: EntityDescriptor, where: Record<string, unknown>, lock?: 'read'): Promise<object | null>;

  /** Maps property paths to column names (for diagnostics that read the table directly). */
  columnsOf?(entity: EntityDescriptor, where: Record<string, unknown>): Record<string, unknown>;
  /** Where the server is, for a diagnostic client outside the pool. */
  serverAddress(): import('../dialects/dialect').ServerAddress;

  /**
   * Runs `fn` with `connection`'s transaction as the ORM's own context too (MikroORM: the
   * TransactionContext, so the global `orm.em` and the ORM's `@Transactional` resolve to it).
   * Optional: TypeORM needs none (ormlock binds its managers itself).
   */
  enter?<T>(connection: PortConnection, fn: () => Promise<T> | T): Promise<T> | T;
  /**
   * Runs `fn` outside any transaction as the ORM's own context sees it (propagation
   * `not_supported`; MikroORM: the global `orm.em` resolves to a manager without a transaction).
   * Optional: TypeORM needs none.
   */
  leave?<T>(fn: () => Promise<T> | T): Promise<T> | T;

  /**
   * The backend id the server announced when `connection` was opened (PostgreSQL's BackendKeyData
   * pid, MySQL's handshake thread id), or undefined when the driver does not say: compared with
   * the dialect's `connectionIdSql` at installation to see a pooler (src/orm/pooler.ts).
   */
  handshakeBackendId?(connection: PortConnection): number | undefined;

  /**
   * A signal that aborts when `connection`'s driver connection dies (a killed backend, a closed
   * socket), its reason the driver's error — from the driver's own events, no statement sent.
   * Undefined when the adapter cannot tell (then a loss shows at the next statement).
   */
  lostSignal?(connection: PortConnection): AbortSignal | undefined;

  /** Detects the dialect of this database (called once, at installation). */
  detectDialect(): Promise<LockDialect>;
}
