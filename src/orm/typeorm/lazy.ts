/**
 * The TypeORM-bound functions of the `ormlock` barrel, loaded on first call: importing `ormlock`
 * (decorators, strategies, errors) never requires TypeORM, so a MikroORM application needs no
 * TypeORM installed. Each function is the adapter's own, with its own signature and docs.
 */
import type * as Install from './install';
import type * as LockRow from './lock-row-on';
import type * as VersionedMigration from './versioned-migration';
import type * as FencingTable from './fencing-table';
import type * as ScheduledTable from './scheduled-table';
import type { ScheduledLockTableOptions } from './scheduled-options-type';
import type { InstallLockingOptions } from '../install-options';
import type { RowLockOptions } from '../../locks/row-lock-options';
import type {
  AddVersionColumnOptions,
  FencingTableOptions,
  LockingHandle,
  TypeOrmDataSourceLike,
  TypeOrmEntityMetadataLike,
  TypeOrmQueryRunnerLike,
  TypeOrmTableLike,
} from './public-types';

/* eslint-disable @typescript-eslint/no-var-requires */
const install = (): typeof Install => require('./install');
const lockRow = (): typeof LockRow => require('./lock-row-on');
const migration = (): typeof VersionedMigration => require('./versioned-migration');
const fencing = (): typeof FencingTable => require('./fencing-table');
const scheduledTable = (): typeof ScheduledTable => require('./scheduled-table');

/*
 * The signatures name TypeORM's types structurally (./public-types), so that the barrel's .d.ts
 * need no `typeorm`: a MikroORM application type-checks without it.
 */

/** See `installLocking` in src/orm/typeorm/install.ts: sets ormlock up on an initialized TypeORM DataSource. */
export const installLocking = <D extends TypeOrmDataSourceLike>(dataSource: D, options?: InstallLockingOptions): Promise<LockingHandle<D>> =>
  install().installLocking(dataSource as unknown as Parameters<typeof Install.installLocking>[0], options) as unknown as Promise<LockingHandle<D>>;
/** See src/orm/typeorm/lock-row-on.ts. */
export const lockRowOn = <T = object>(
  queryRunner: TypeOrmQueryRunnerLike,
  meta: TypeOrmEntityMetadataLike,
  where: Record<string, unknown>,
  options: RowLockOptions,
  subject: string,
): Promise<T | null> => lockRow().lockRowOn<T>(queryRunner as unknown as QueryRunnerOf, meta as unknown as MetadataOf, where, options, subject);
/** See src/orm/typeorm/versioned-migration.ts. */
export const addVersionColumn = (
  queryRunner: TypeOrmQueryRunnerLike,
  table: string | TypeOrmTableLike,
  column?: string,
  options?: AddVersionColumnOptions,
): Promise<void> => migration().addVersionColumn(queryRunner as unknown as QueryRunnerOf, table as unknown as TableOf, column, options);
/** See src/orm/typeorm/versioned-migration.ts. */
export const dropVersionColumn = (queryRunner: TypeOrmQueryRunnerLike, table: string | TypeOrmTableLike, column?: string): Promise<void> =>
  migration().dropVersionColumn(queryRunner as unknown as QueryRunnerOf, table as unknown as TableOf, column);
/** See src/orm/typeorm/fencing-table.ts. */
export const createFencingTable = (target: TypeOrmDataSourceLike | TypeOrmQueryRunnerLike, options?: FencingTableOptions): Promise<void> =>
  fencing().createFencingTable(target as unknown as FencingTargetOf, options);
/** See src/orm/typeorm/fencing-table.ts. */
export const dropFencingTable = (target: TypeOrmDataSourceLike | TypeOrmQueryRunnerLike, options?: FencingTableOptions): Promise<void> =>
  fencing().dropFencingTable(target as unknown as FencingTargetOf, options);
/** See src/orm/typeorm/scheduled-table.ts. */
export const createScheduledLockTable = (target: TypeOrmDataSourceLike | TypeOrmQueryRunnerLike | object, options?: ScheduledLockTableOptions): Promise<void> =>
  scheduledTable().createScheduledLockTable(target, options);
/** See src/orm/typeorm/scheduled-table.ts. */
export const dropScheduledLockTable = (target: TypeOrmDataSourceLike | TypeOrmQueryRunnerLike | object, options?: ScheduledLockTableOptions): Promise<void> =>
  scheduledTable().dropScheduledLockTable(target, options);

type QueryRunnerOf = Parameters<typeof LockRow.lockRowOn>[0];
type MetadataOf = Parameters<typeof LockRow.lockRowOn>[1];
type TableOf = Parameters<typeof VersionedMigration.addVersionColumn>[1];
type FencingTargetOf = Parameters<typeof FencingTable.createFencingTable>[0];
