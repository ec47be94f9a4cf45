import { DataSource, type DataSourceOptions, type MixedList, type EntitySchema } from 'typeorm';
import { Client as PgClient } from 'pg';
import { startEmbeddedPostgres, type EmbeddedPg } from './embedded-postgres';

/**
 * The databases every test runs against. Connection settings come from PG_URL and
 * MYSQL_URL (loopback defaults). Without a reachable PostgreSQL an embedded one is started.
 * A missing MariaDB is a loud skip locally and a failure when CI is set.
 *
 * Each test process works in its own database (`ormlock_t<pid>`, or ORMLOCK_TEST_DB, which
 * child processes inherit), so parallel runs never see each other's tables.
 */
export type BackendName = 'postgres' | 'mariadb';
export const BACKENDS: BackendName[] = ['postgres', 'mariadb'];

const DB = (process.env.ORMLOCK_TEST_DB ??= `ormlock_t${process.pid}`);
const OWNER = process.env.ORMLOCK_TEST_DB_OWNER === undefined;
if (OWNER) process.env.ORMLOCK_TEST_DB_OWNER = String(process.pid);

let embedded: EmbeddedPg | undefined;
const resolved = new Map<BackendName, Promise<string | null>>();
const created = new Set<BackendName>();

/** Base URL (database `test`) of a backend, or null when it is unreachable (and not CI). */
export function backendUrl(name: BackendName): Promise<string | null> {
  let p = resolved.get(name);
  if (!p) {
    p = name === 'postgres' ? resolvePostgres() : resolveMysql();
    resolved.set(name, p);
  }
  return p;
}

async function resolvePostgres(): Promise<string> {
  const url = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const forceEmbedded = process.env.ORMLOCK_EMBEDDED_PG === '1' && !process.env.PG_URL;
  if (!forceEmbedded && (await pgAnswers(url))) return url;
  if (process.env.PG_URL) throw new Error(`PG_URL=${process.env.PG_URL} does not answer`);
  console.warn(`[ormlock tests] ${forceEmbedded ? 'ORMLOCK_EMBEDDED_PG=1' : 'no PostgreSQL on 127.0.0.1:5432'}: starting an embedded one`);
  embedded = await startEmbeddedPostgres();
  process.env.PG_URL = embedded.url; // child processes use the same server
  return embedded.url;
}

async function resolveMysql(): Promise<string | null> {
  const url = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
  try {
    const mysql = await import('mysql2/promise');
    const conn = await mysql.createConnection({ uri: url, connectTimeout: 3000 });
    await conn.end();
    return url;
  } catch (error) {
    if (process.env.CI) throw new Error(`MariaDB/MySQL at ${url} does not answer and CI is set: ${(error as Error).message}`);
    console.warn(`\n[ormlock tests] SKIPPING MariaDB: ${url} does not answer (${(error as Error).message})\n`);
    return null;
  }
}

async function pgAnswers(url: string): Promise<boolean> {
  const c = new PgClient({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.end();
    return true;
  } catch {
    return false;
  }
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function ensureDatabase(name: BackendName, url: string): Promise<void> {
  if (created.has(name)) return;
  if (name === 'postgres') {
    const c = new PgClient({ connectionString: url });
    await c.connect();
    const exists = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB]);
    if (!exists.rowCount) await c.query(`CREATE DATABASE "${DB}"`).catch(() => undefined);
    await c.end();
  } else {
    const mysql = await import('mysql2/promise');
    const conn = await mysql.createConnection({ uri: url });
    await conn.query(`CREATE DATABASE IF NOT EXISTS \`${DB}\``);
    await conn.end();
  }
  created.add(name);
}

/** Drops the per-process databases and stops the embedded server (root afterAll hook). */
export async function teardownBackends(): Promise<void> {
  if (!OWNER) return;
  for (const name of created) {
    const url = await backendUrl(name);
    if (!url) continue;
    if (name === 'postgres') {
      const c = new PgClient({ connectionString: url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${DB}" WITH (FORCE)`).catch(() => undefined);
      await c.end();
    } else {
      const mysql = await import('mysql2/promise');
      const conn = await mysql.createConnection({ uri: url });
      await conn.query(`DROP DATABASE IF EXISTS \`${DB}\``).catch(() => undefined);
      await conn.end();
    }
  }
  await embedded?.stop().catch(() => undefined);
}

export interface DataSourceExtras {
  poolSize?: number;
  logger?: DataSourceOptions['logger'];
  logging?: DataSourceOptions['logging'];
  subscribers?: DataSourceOptions['subscribers'];
  /** Drop and re-create the tables (default true; child processes of a test pass false). */
  fresh?: boolean;
}

/** DataSource options for a backend's per-process test database; null when unavailable. */
export async function dataSourceOptions(
  name: BackendName,
  entities: MixedList<Function | string | EntitySchema>,
  extras: DataSourceExtras = {},
): Promise<DataSourceOptions | null> {
  const base = await backendUrl(name);
  if (!base) return null;
  await ensureDatabase(name, base);
  const url = withDatabase(base, DB);
  const common = {
    url,
    entities,
    synchronize: extras.fresh ?? true,
    dropSchema: extras.fresh ?? true,
    poolSize: extras.poolSize ?? 40,
    logger: extras.logger,
    logging: extras.logging ?? false,
    subscribers: extras.subscribers,
  };
  return name === 'postgres' ? { type: 'postgres', ...common } : { type: 'mariadb', ...common, charset: 'utf8mb4' };
}

/** A new initialized DataSource (not installed), or null when the backend is unavailable. */
export async function createDataSource(
  name: BackendName,
  entities: MixedList<Function | string | EntitySchema>,
  extras: DataSourceExtras = {},
): Promise<DataSource | null> {
  const options = await dataSourceOptions(name, entities, extras);
  if (!options) return null;
  return new DataSource(options).initialize();
}
