import type { ServerAddress } from '../dialect';
import { withOutsideClient } from './outside-client';

/**
 * Reads who holds the row lock on `table` where `where`: the xmax of the row is the
 * holder's transaction id, and the holder holds a lock on its own transaction id.
 * Runs on a fresh client outside the pool, so a timed-out caller that still holds its
 * pooled connection can never wait for a second one (no pool deadlock at pool size 1).
 */
export function describePostgresRowLockHolder(
  server: ServerAddress,
  table: string,
  where: Record<string, unknown>,
): Promise<Array<{ pid: number; query: string | null }>> {
  const cols = Object.keys(where);
  const cond = cols.map((c, i) => `${quote(c)} = $${i + 1}`).join(' AND ');
  const tableSql = table.split('.').map(quote).join('.');
  return withOutsideClient(server, [], async (query) => {
    const rows = await query(
      `SELECT a.pid, a.query
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'transactionid' AND l.granted AND l.mode = 'ExclusiveLock'
          AND l.transactionid::text IN (
            SELECT xmax::text FROM ${tableSql} WHERE ${cond}
            UNION ALL
            SELECT (pg_get_multixact_members(xmax)).xid::text FROM ${tableSql} WHERE ${cond}
              AND xmax <> 0 AND NOT EXISTS (SELECT 1 FROM pg_locks x WHERE x.locktype = 'transactionid' AND x.transactionid::text = xmax::text)
          )`,
      cols.map((c) => where[c]),
    );
    return rows.map((r: { pid: number; query: string | null }) => ({ pid: Number(r.pid), query: r.query }));
  });
}

function quote(ident: string): string {
  return `"${ident.replace(/"/g, '""')}"`;
}
