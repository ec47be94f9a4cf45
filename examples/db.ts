/**
 * DataSource options for the examples' schema, from a connection URL: used by the demo, by
 * migrations/data-source.ts (the TypeORM CLI's entry) and by the tests.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { DataSourceOptions, MigrationInterface } from 'typeorm';
import { exampleEntities, exampleSubscribers } from './schema';

export type ExampleDb = 'postgres' | 'mysql' | 'mariadb';

const MIGRATIONS_DIR = path.join(__dirname, '..', 'migrations');

/**
 * The migration classes in migrations/: every file named `<timestamp>-<Name>.ts|js`, in
 * timestamp order (helpers without a timestamp, like data-source.ts, are not migrations).
 */
export function exampleMigrations(): Array<new () => MigrationInterface> {
  const files = fs
    .readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{10,}-[\w-]+\.(ts|js)$/.test(f) && !f.endsWith('.d.ts'))
    .sort();
  const classes: Array<new () => MigrationInterface> = [];
  for (const file of files) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const mod = require(path.join(MIGRATIONS_DIR, file)) as Record<string, unknown>;
    for (const value of Object.values(mod)) {
      if (typeof value === 'function' && typeof (value.prototype as MigrationInterface | undefined)?.up === 'function') {
        classes.push(value as new () => MigrationInterface);
      }
    }
  }
  return classes;
}

/** The database kind of a URL: postgres://, mysql:// or mariadb://. */
export function dbOfUrl(url: string): ExampleDb {
  const scheme = new URL(url).protocol.replace(/:$/, '');
  if (scheme === 'postgres' || scheme === 'postgresql') return 'postgres';
  if (scheme === 'mysql') return 'mysql';
  if (scheme === 'mariadb') return 'mariadb';
  throw new Error(`unsupported database URL scheme '${scheme}:' (use postgres://, mysql:// or mariadb://)`);
}

/**
 * Options for the examples' schema on `url`. Migrations create the schema: `synchronize` is off.
 * MySQL/MariaDB URLs are given to the driver as mysql:// (mariadb:// only picks the dialect).
 */
export function exampleDataSourceOptions(url: string, extra: Partial<DataSourceOptions> = {}): DataSourceOptions {
  const db = dbOfUrl(url);
  const common = {
    entities: exampleEntities,
    subscribers: exampleSubscribers,
    migrations: exampleMigrations(),
    synchronize: false,
    migrationsTransactionMode: 'each' as const,
  };
  if (db === 'postgres') return { type: 'postgres', url, poolSize: 30, ...common, ...(extra as object) } as DataSourceOptions;
  const u = new URL(url);
  u.protocol = 'mysql:';
  return { type: db, url: u.toString(), poolSize: 30, charset: 'utf8mb4', ...common, ...(extra as object) } as DataSourceOptions;
}

/** The URL the environment names: PG_URL, or MYSQL_URL; ORMLOCK_DB=postgres|mysql picks when both are set. */
export function urlFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const prefer = env.ORMLOCK_DB;
  if (prefer === 'mysql' || prefer === 'mariadb') return env.MYSQL_URL;
  if (prefer === 'postgres') return env.PG_URL;
  return env.PG_URL ?? env.MYSQL_URL;
}
