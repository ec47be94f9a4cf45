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

/* eslint-disable @typescript-eslint/no-var-requires */
const install = (): typeof Install => require('./install');
const lockRow = (): typeof LockRow => require('./lock-row-on');
const migration = (): typeof VersionedMigration => require('./versioned-migration');
const fencing = (): typeof FencingTable => require('./fencing-table');
const scheduledTable = (): typeof ScheduledTable => require('./scheduled-table');

/** See `installLocking` in src/orm/typeorm/install.ts: sets ormlock up on an initialized TypeORM DataSource. */
export const installLocking: typeof Install.installLocking = (...args) => install().installLocking(...args);
/** See src/orm/typeorm/lock-row-on.ts. */
export const lockRowOn: typeof LockRow.lockRowOn = (...args) => lockRow().lockRowOn(...args);
/** See src/orm/typeorm/versioned-migration.ts. */
export const addVersionColumn: typeof VersionedMigration.addVersionColumn = (...args) => migration().addVersionColumn(...args);
/** See src/orm/typeorm/versioned-migration.ts. */
export const dropVersionColumn: typeof VersionedMigration.dropVersionColumn = (...args) => migration().dropVersionColumn(...args);
/** See src/orm/typeorm/fencing-table.ts. */
export const createFencingTable: typeof FencingTable.createFencingTable = (...args) => fencing().createFencingTable(...args);
/** See src/orm/typeorm/fencing-table.ts. */
export const dropFencingTable: typeof FencingTable.dropFencingTable = (...args) => fencing().dropFencingTable(...args);
/** See src/orm/typeorm/scheduled-table.ts. */
export const createScheduledLockTable: typeof ScheduledTable.createScheduledLockTable = (...args) => scheduledTable().createScheduledLockTable(...args);
/** See src/orm/typeorm/scheduled-table.ts. */
export const dropScheduledLockTable: typeof ScheduledTable.dropScheduledLockTable = (...args) => scheduledTable().dropScheduledLockTable(...args);
