import { dataSourceOptions, type BackendName } from './backends';

/**
 * A connection of its own to a backend's per-process test database, through the driver alone (no
 * ORM, no ormlock): what another client sees of the locks a test's transaction holds.
 */
export interface DbProbe {
  /** `sql` with `?` placeholders on both databases. */
  query(sql: string, params?: unknown[]): Promise<any[]>;
  /** Whether another transaction holds a row lock on `table`'s row `id` (a `FOR UPDATE SKIP LOCKED` read finds nothing). */
  rowLocked(table: string, id: number): Promise<boolean>;
  /** PostgreSQL: advisory locks held by backend `pid` (pg_locks). */
  advisoryLocksOf(pid: number): Promise<number>;
  /** MySQL/MariaDB: whether a GET_LOCK name is held by some session (IS_USED_LOCK). */
  namedLockUsed(lockId: string): Promise<boolean>;
  close(): Promise<void>;
}

export async function openProbe(name: BackendName): Promise<DbProbe | null> {
  const options = (await dataSourceOptions(name, [])) as { url: string } | null;
  if (!options) return null;
  let query: DbProbe['query'];
  let close: () => Promise<void>;
  if (name === 'postgres') {
    const { Client } = await import('pg');
    const client = new Client({ connectionString: options.url });
    await client.connect();
    query = async (sql, params = []) => {
      let n = 0;
      return (
        await client.query(
          sql.replace(/\?/g, () => `$${++n}`),
          params,
        )
      ).rows;
    };
    close = () => client.end();
  } else {
    const mysql = await import('mysql2/promise');
    const conn = await mysql.createConnection({ uri: options.url });
    query = async (sql, params = []) => (await conn.query(sql, params))[0] as any[];
    close = () => conn.end();
  }
  const quote = (t: string) => (name === 'postgres' ? `"${t}"` : `\`${t}\``);
  return {
    query,
    close,
    rowLocked: async (table, id) => {
      await query('BEGIN');
      try {
        return (await query(`SELECT id FROM ${quote(table)} WHERE id = ? FOR UPDATE SKIP LOCKED`, [id])).length === 0;
      } finally {
        await query('ROLLBACK');
      }
    },
    advisoryLocksOf: async (pid) => Number((await query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = ?", [pid]))[0].n),
    namedLockUsed: async (lockId) => (await query('SELECT IS_USED_LOCK(?) AS holder', [lockId]))[0].holder !== null,
  };
}
