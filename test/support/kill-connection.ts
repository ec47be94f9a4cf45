import { Client as PgClient } from 'pg';
import { backendUrl, type BackendName } from './backends';

/**
 * Killing and cancelling from outside, as an operator (or a failover) would: one admin connection
 * of its own per call, outside every pool under test. `id` is the backend's connection id
 * (PostgreSQL `pg_backend_pid()`, MariaDB `CONNECTION_ID()`; `CONNECTION_ID_SQL` reads it).
 */

/** The statement that reads the current connection's id, per backend (column `id`). */
export const CONNECTION_ID_SQL: Record<BackendName, string> = {
  postgres: 'SELECT pg_backend_pid() AS id',
  mariadb: 'SELECT CONNECTION_ID() AS id',
};

/** Reads the id of the connection `run` sends statements on. */
export async function connectionIdOn(name: BackendName, run: (sql: string) => Promise<any>): Promise<number> {
  const rows = await run(CONNECTION_ID_SQL[name]);
  return Number((Array.isArray(rows) ? rows[0] : rows)?.id);
}

/** Runs statements on a fresh admin connection (database `test`), then closes it. */
export async function asAdmin<T>(name: BackendName, fn: (query: (sql: string, params?: unknown[]) => Promise<any[]>) => Promise<T>): Promise<T> {
  const url = await backendUrl(name);
  if (!url) throw new Error(`${name} is not available`);
  if (name === 'postgres') {
    const c = new PgClient({ connectionString: url });
    await c.connect();
    try {
      return await fn(async (sql, params) => (await c.query(sql, params as unknown[])).rows);
    } finally {
      await c.end();
    }
  }
  const mysql = await import('mysql2/promise');
  const c = await mysql.createConnection({ uri: url });
  try {
    return await fn(async (sql, params) => (await c.query(sql, params))[0] as any[]);
  } finally {
    await c.end();
  }
}

/** Terminates the connection `id` (PostgreSQL `pg_terminate_backend`, MariaDB `KILL`); resolves when the server did it. */
export function killConnection(name: BackendName, id: number): Promise<void> {
  return asAdmin(name, async (query) => {
    if (name === 'postgres') await query('SELECT pg_terminate_backend($1)', [id]);
    else await query(`KILL ${Number(id)}`);
  });
}

/**
 * Resolves once the server has ended connection `id` (gone from PostgreSQL's `pg_stat_activity`,
 * MariaDB's PROCESSLIST): a kill is acted on by the killed session itself, which frees its
 * session locks as it ends, so what it held is checked after this. Throws after `timeoutMs`.
 */
export function connectionGone(name: BackendName, id: number, timeoutMs = 10_000): Promise<void> {
  const sql = connectionCountSql(name);
  return asAdmin(name, async (query) => {
    const until = Date.now() + timeoutMs;
    while (Number((await query(sql, [id]))[0].n) > 0) {
      if (Date.now() > until) throw new Error(`connection ${id} still on the server ${timeoutMs} ms after it was killed`);
      await new Promise((r) => setTimeout(r, 10));
    }
  });
}

/** How many sessions the server has with the connection id given as the one parameter (0 or 1, as `n`). */
export function connectionCountSql(name: BackendName): string {
  return name === 'postgres'
    ? 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1'
    : 'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ?';
}

/** Cancels the statement running on connection `id` (PostgreSQL `pg_cancel_backend`, MariaDB `KILL QUERY`); the connection stays. */
export function cancelStatement(name: BackendName, id: number): Promise<void> {
  return asAdmin(name, async (query) => {
    if (name === 'postgres') await query('SELECT pg_cancel_backend($1)', [id]);
    else await query(`KILL QUERY ${Number(id)}`);
  });
}

/**
 * The ids of connections of this test process's database that wait for a lock now (PostgreSQL:
 * `pg_stat_activity.wait_event_type = 'Lock'`, advisory locks included; MariaDB: a GET_LOCK wait
 * in PROCESSLIST, an InnoDB transaction in LOCK WAIT, or a running `… FOR UPDATE`: a lock read by
 * primary key waits in the optimizer's const-table read — PROCESSLIST state 'Statistics' — and its
 * transaction is not listed in INNODB_TRX while it waits).
 */
export function lockWaiters(name: BackendName): Promise<number[]> {
  const db = process.env.ORMLOCK_TEST_DB!;
  return asAdmin(name, async (query) => {
    const rows =
      name === 'postgres'
        ? await query(`SELECT pid AS id FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`, [db])
        : await query(
            `SELECT p.ID AS id FROM information_schema.PROCESSLIST p
               LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
              WHERE p.DB = ? AND (p.STATE = 'User lock' OR t.trx_state = 'LOCK WAIT' OR (p.COMMAND = 'Query' AND p.INFO LIKE '%FOR UPDATE%'))`,
            [db],
          );
    return rows.map((r) => Number(r.id));
  });
}
