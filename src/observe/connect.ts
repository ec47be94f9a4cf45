import type { RunQuery } from '../dialects/dialect';
import { unsupportedUrl } from '../faults/observe';
import { missingPackage } from '../faults/options';

/** Where to connect: a URL (`postgres://…`, `mysql://…`, `mariadb://…`) or driver settings. */
export interface ConnectionTarget {
  family: 'postgres' | 'mysql';
  url?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  /** Passed to the driver as is (pg / mysql2 `ssl`). */
  ssl?: unknown;
  /** MySQL unix socket. */
  socketPath?: string;
}

/** One connection of its own (outside any pool), with a `RunQuery` over it. */
export interface OpenConnection {
  family: 'postgres' | 'mysql';
  run: RunQuery;
  close(): Promise<void>;
}

/** The family of a database URL, or a LockConfigError naming the argument. */
export function targetFromUrl(url: string, argument = 'url'): ConnectionTarget {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') return { family: 'postgres', url };
  if (scheme === 'mysql' || scheme === 'mariadb') return { family: 'mysql', url: url.replace(/^mariadb:/i, 'mysql:') };
  throw unsupportedUrl(argument, scheme);
}

/**
 * Opens one connection with the `pg` or `mysql2` driver (optional peers, loaded here only).
 * It is not taken from the application's pool: when every pooled connection is waiting for a
 * lock, the inspector still gets in.
 */
export async function openConnection(target: ConnectionTarget): Promise<OpenConnection> {
  if (target.family === 'postgres') {
    const pg = requireDriver<typeof import('pg')>('pg');
    const client = new pg.Client(
      target.url
        ? { connectionString: target.url, ssl: target.ssl as never, connectionTimeoutMillis: 5000 }
        : {
            host: target.host,
            port: target.port,
            user: target.user,
            password: target.password,
            database: target.database,
            ssl: target.ssl as never,
            connectionTimeoutMillis: 5000,
          },
    );
    client.on('error', () => undefined); // a server going away must not crash the process; the next query fails
    await client.connect();
    return {
      family: 'postgres',
      run: async (sql, params) => (await client.query(sql, params as unknown[])).rows,
      close: () => client.end().catch(() => undefined),
    };
  }
  const mysql = requireDriver<typeof import('mysql2/promise')>('mysql2/promise');
  const conn = await mysql.createConnection(
    target.url
      ? { uri: target.url, ssl: target.ssl as never, connectTimeout: 5000 }
      : {
          host: target.host,
          port: target.port,
          user: target.user,
          password: target.password,
          database: target.database,
          ssl: target.ssl as never,
          socketPath: target.socketPath,
          connectTimeout: 5000,
        },
  );
  conn.on('error', () => undefined);
  return {
    family: 'mysql',
    run: async (sql, params) => {
      const [rows] = await conn.query(sql, params);
      return rows as any[];
    },
    close: () => conn.end().catch(() => undefined),
  };
}

function requireDriver<T>(name: string): T {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require(name) as T;
  } catch {
    throw missingPackage('inspecting locks', name.split('/')[0]);
  }
}
