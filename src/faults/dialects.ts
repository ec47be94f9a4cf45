/**
 * The faults of choosing a dialect (src/dialects/index.ts): a database ormlock has no dialect for.
 * One factory per fault, one wording; the caller throws what it returns. What a dialect cannot do
 * is ./options (`dialectLacks`) or the area's own (a row lock mode: ./row-locks).
 */
import { LockConfigError } from '../errors';

/** The ORM reports a database family ormlock has no dialect for. */
export function unsupportedDatabase(family: string): LockConfigError {
  return new LockConfigError(`ormlock supports PostgreSQL, MySQL and MariaDB; this database is '${family}'.`);
}
