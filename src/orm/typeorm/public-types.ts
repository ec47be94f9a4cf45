/**
 * The TypeORM shapes that ormlock's public signatures name, written structurally: the published
 * .d.ts of the `ormlock` barrel then import nothing from `typeorm`, so a MikroORM application
 * without TypeORM type-checks with `skipLibCheck: false`. A real `DataSource`, `QueryRunner`,
 * `EntityMetadata` or `Table` of any supported TypeORM version satisfies them; the adapter checks
 * at run time that it was given one.
 */
import type { LockDialect } from '../../dialects/dialect';
import type { Installation } from '../../installations';

/** A TypeORM `DataSource` (initialized before `installLocking`). */
export interface TypeOrmDataSourceLike {
  readonly isInitialized: boolean;
  createQueryRunner(...args: any[]): object;
  getMetadata(...args: any[]): object;
  destroy(): Promise<void>;
}

/** A TypeORM `QueryRunner` (a migration's, a hook's). */
export interface TypeOrmQueryRunnerLike {
  readonly connection: object;
  query(query: string, ...args: any[]): Promise<any>;
  release(): Promise<void>;
}

/** A TypeORM `EntityMetadata` (`dataSource.getMetadata(Entity)`). */
export interface TypeOrmEntityMetadataLike {
  readonly name: string;
  readonly tableName: string;
}

/** A TypeORM `Table` (of the schema API), or its name. */
export interface TypeOrmTableLike {
  readonly name: string;
}

/** What `installLocking(dataSource)` returns. */
export interface LockingHandle<D extends TypeOrmDataSourceLike = TypeOrmDataSourceLike> {
  readonly dataSource: D;
  readonly dialect: LockDialect;
  /** The installation (settings, observers) this handle stands for. */
  readonly installation: Installation;
  /** Removes the subscribers and the transaction binding of this DataSource; the last one restores TypeORM's internals. */
  uninstall(): void;
}

export interface AddVersionColumnOptions {
  /** Version given to every existing row, and the column's default (an integer; default 1). */
  default?: number;
  /** Column type (default 'int'; 'bigint' for very hot rows). */
  type?: 'int' | 'integer' | 'bigint';
  /**
   * Keep the DEFAULT on the column after the existing rows were filled (default true), so that
   * writers that do not know the column (other services, raw SQL) can still insert. TypeORM always
   * writes the version itself. Declare `@VersionColumn({ default: 1 })` so that schema diffs agree,
   * or pass `false` to drop the default and match a plain `@VersionColumn()`.
   */
  keepDefault?: boolean;
}

export interface FencingTableOptions {
  /** Table name (default `ormlock_fencing`); give the same to `new Redlock(clients, { fencing: { dataSource, table } })`. */
  table?: string;
}
