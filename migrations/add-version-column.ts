/**
 * The TypeORM migration helper for adopting `@Versioned` on tables that already hold rows:
 * `addVersionColumn(queryRunner, table, column = 'version', { default: 1 })` and its
 * `dropVersionColumn`. The implementation lives in src/ (so it ships with the package and is
 * exported from 'ormlock'); this module is where migrations of this repository import it from.
 * See 1760000000000-add-version-to-legacy-accounts.ts for a migration class using it.
 */
export { addVersionColumn, dropVersionColumn, type AddVersionColumnOptions } from '../src/orm/typeorm/versioned-migration';
