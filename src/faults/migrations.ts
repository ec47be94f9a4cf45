/**
 * The faults of the migration helpers (addVersionColumn, createFencingTable,
 * createScheduledLockTable and their `down`s): what they were given to work on, a table or column
 * that is or is not there. One factory per fault, one wording; the caller throws what it returns.
 * Shared faults (a wrong option value, a dialect without the tables) are in ./options.
 */
import { LockConfigError, type LockErrorDetails } from '../errors';

/**
 * A table (or sequence) a lock needs does not exist: `create` is the helper call that makes it,
 * for the `table` given (its options name the table when it is not `defaultTable`); `details` say who asked.
 */
export function missingTable(
  caller: string,
  what: string,
  create: string,
  table: string,
  defaultTable: string,
  cause: unknown,
  details?: LockErrorDetails,
): LockConfigError {
  const options = table === defaultTable ? '' : `, { table: '${table}' }`;
  return new LockConfigError(`${caller}: ${what} does not exist; create it once with \`await ${create}(dataSource${options})\` (or in a migration)`, {
    ...details,
    cause,
  });
}

/** The table the helper works on does not exist. */
export function noSuchTable(caller: string, table: string): LockConfigError {
  return new LockConfigError(`${caller}: table '${table}' does not exist`);
}

/** The column the helper would add is there already. */
export function columnExists(caller: string, table: string, column: string): LockConfigError {
  return new LockConfigError(`${caller}: table ${table} already has a column '${column}'`);
}
