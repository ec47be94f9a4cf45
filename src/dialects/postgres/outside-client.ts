import type { ServerAddress } from '../dialect';

/**
 * Runs `fn` on a fresh PostgreSQL client outside the pool, so a caller that holds the pool's
 * only connection never waits for a second one (no pool deadlock at pool size 1). Resolves
 * `fallback` when the server cannot be reached or the query fails (diagnostics only).
 */
export async function withOutsideClient<T>(
  server: ServerAddress,
  fallback: T,
  fn: (query: (sql: string, params: unknown[]) => Promise<any[]>) => Promise<T>,
): Promise<T> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const pg = require('pg') as typeof import('pg');
  const client = new pg.Client(
    server.url
      ? { connectionString: server.url, connectionTimeoutMillis: 2000 }
      : { host: server.host, port: server.port, user: server.user, password: server.password, database: server.database, connectionTimeoutMillis: 2000 },
  );
  try {
    await client.connect();
    return await fn(async (sql, params) => (await client.query(sql, params)).rows);
  } catch {
    return fallback;
  } finally {
    await client.end().catch(() => undefined);
  }
}
