/**
 * The faults of observation (src/observe/): `inspectLocks`, the `ormlock` command's arguments,
 * OpenTelemetry. One factory per fault, one wording; the caller throws what it returns.
 */
import { LockConfigError } from '../errors';

/** A database URL of a scheme ormlock cannot inspect. */
export function unsupportedUrl(argument: string, scheme: string | undefined): LockConfigError {
  return new LockConfigError(
    `${argument}: expected a postgres://, postgresql://, mysql:// or mariadb:// URL, got ${scheme ? `'${scheme}://…'` : 'no URL scheme'}`,
  );
}

/** inspectLocks was given something it cannot inspect. */
export function notInspectable(): LockConfigError {
  return new LockConfigError(
    'inspectLocks: expected an initialized TypeORM DataSource, a postgres:// or mysql:// URL, or { family, host, … } connection settings',
  );
}

/** A wrong command line of `ormlock`: `problem` (empty: none, just the usage), then the usage. */
export function badCommandLine(problem: string, usage: string): LockConfigError {
  return new LockConfigError(problem ? `${problem}\n${usage}` : usage);
}

/** inspectLocks on a TypeORM DataSource of a database it cannot inspect (`type`: its `options.type`). */
export function notInspectableDataSource(type: unknown): LockConfigError {
  return new LockConfigError(`inspectLocks supports PostgreSQL, MySQL and MariaDB; this DataSource is '${String(type)}'.`);
}
