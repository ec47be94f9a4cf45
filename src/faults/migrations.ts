/**
 * The faults of the migration helpers (addVersionColumn, createFencingTable,
 * createScheduledLockTable and their `down`s): what they were given to work on, a table or column
 * that is or is not there. One factory per fault, one wording; the caller throws what it returns.
 * Shared faults (a wrong option value, a dialect without the tables) are in ./options.
 */
import { LockConfigError } from '../errors';

/** The table the helper works on does not exist. */
export function noSuchTable(caller: string, table: string): LockConfigError {
  return new LockConfigError(`${caller}: table '${table}' does not exist`);
}

/** The column the helper would add is there already. */
export function columnExists(caller: string, table: string, column: string): LockConfigError {
  return new LockConfigError(`${caller}: table ${table} already has a column '${column}'`);
}
