/**
 * Looking at the databases from outside every pool: killing a connection, and finding locks or
 * transactions left behind (pg_locks / pgrowlocks on PostgreSQL; IS_USED_LOCK, INNODB_TRX and
 * INNODB_LOCKS on MariaDB, which has no performance_schema.data_locks), plus a NOWAIT probe
 * that proves no row lock is left on the given rows on either database.
 */
import { Client as PgClient } from 'pg';
import { backendUrl, type BackendName } from '../../support/backends';

const DB = () => process.env.ORMLOCK_TEST_DB!;

function withDatabase(url: string): string {
  const u = new URL(url);
  u.pathname = `/${DB()}`;
  return u.toString();
}

/** One statement on a connection of its own (outside every pool), then closes it. */
export async function adminQuery(backend: BackendName, sql: string, params: unknown[] = []): Promise<any[]> {
  const base = await backendUrl(backend);
  if (!base) throw new Error(`${backend} is not available`);
  if (backend === 'postgres') {
    const c = new PgClient({ connectionString: withDatabase(base) });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows;
    } finally {
      await c.end();
    }
  }
  const mysql = await import('mysql2/promise');
  const conn = await mysql.createConnection({ uri: withDatabase(base) });
  try {
    const [rows] = await conn.query(sql, params);
    return rows as any[];
  } finally {
    await conn.end();
  }
}

/** pg_terminate_backend(pid) / KILL CONNECTION id. */
export async function killConnection(backend: BackendName, id: number): Promise<void> {
  if (backend === 'postgres') {
    const [row] = await adminQuery(backend, 'SELECT pg_terminate_backend($1) AS killed', [id]);
    if (row?.killed !== true) throw new Error(`pg_terminate_backend(${id}) returned ${row?.killed}`);
  } else {
    await adminQuery(backend, `KILL CONNECTION ${Number(id)}`);
  }
}

/** Waits until none of `ids` is a live connection any more (a killed process's connections end once the server notices). */
export async function waitConnectionsGone(backend: BackendName, ids: number[], timeoutMs = 30_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const live = await liveConnections(backend, ids);
    if (!live.length || Date.now() > deadline) return live;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function liveConnections(backend: BackendName, ids: number[]): Promise<number[]> {
  if (!ids.length) return [];
  if (backend === 'postgres') {
    const rows = await adminQuery(backend, 'SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[])', [ids]);
    return rows.map((r) => Number(r.pid));
  }
  const rows = await adminQuery(backend, `SELECT ID AS id FROM information_schema.PROCESSLIST WHERE ID IN (${ids.map(Number).join(',')})`);
  return rows.map((r) => Number(r.id));
}

let pgrowlocks: boolean | undefined;

export interface LeftoverCheck {
  /** Connections that were killed (or belonged to a killed process). */
  deadConns: number[];
  /** Advisory lock ids (PostgreSQL bigint text / GET_LOCK names) that must be free. */
  advisoryIds: string[];
  /** Rows that must not be locked: table → ids. */
  rows: Record<string, number[]>;
}

/**
 * What is left behind: returns one line per problem (empty when clean). Call it when no
 * worker is inside a transaction any more.
 */
export async function leftovers(backend: BackendName, check: LeftoverCheck): Promise<string[]> {
  const problems: string[] = [];
  const dead = check.deadConns.map(Number);
  const stillLive = await waitConnectionsGone(backend, dead);
  if (stillLive.length) problems.push(`killed connections still live: ${stillLive.join(', ')}`);
  if (backend === 'postgres') {
    if (dead.length) {
      const locks = await adminQuery(backend, 'SELECT locktype, pid, mode, granted FROM pg_locks WHERE pid = ANY($1::int[])', [dead]);
      for (const l of locks) problems.push(`pg_locks: ${l.locktype} ${l.mode} held by dead pid ${l.pid}`);
    }
    const advisory = await adminQuery(
      backend,
      `SELECT l.pid, l.mode, l.classid, l.objid FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    for (const l of advisory) problems.push(`pg_locks: advisory lock (${l.classid}, ${l.objid}) still held by pid ${l.pid}`);
    const idle = await adminQuery(
      backend,
      `SELECT pid, state, application_name FROM pg_stat_activity
        WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`,
    );
    for (const s of idle) problems.push(`pg_stat_activity: pid ${s.pid} (${s.application_name}) is ${s.state}`);
    if (pgrowlocks === undefined) {
      pgrowlocks = await adminQuery(backend, 'CREATE EXTENSION IF NOT EXISTS pgrowlocks').then(
        () => true,
        () => false,
      );
    }
    if (pgrowlocks) {
      for (const table of Object.keys(check.rows)) {
        const locked = await adminQuery(backend, `SELECT locked_row, pids, modes FROM pgrowlocks('${table}')`);
        for (const r of locked) problems.push(`pgrowlocks(${table}): row ${r.locked_row} locked by pids ${r.pids} (${r.modes})`);
      }
    }
    for (const id of check.advisoryIds) {
      const [row] = await adminQuery(backend, 'SELECT pg_try_advisory_lock($1::bigint) AS got' /* released when this connection closes */, [id]);
      if (row?.got !== true) problems.push(`advisory lock ${id} cannot be taken`);
    }
  } else {
    if (dead.length) {
      const trx = await adminQuery(
        backend,
        `SELECT trx_id, trx_mysql_thread_id AS thread, trx_state FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id IN (${dead.join(',')})`,
      );
      for (const t of trx) problems.push(`INNODB_TRX: transaction ${t.trx_id} of dead thread ${t.thread} (${t.trx_state})`);
    }
    const ours = await adminQuery(
      backend,
      `SELECT t.trx_id, t.trx_mysql_thread_id AS thread, t.trx_state, t.trx_rows_locked AS locked
         FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
        WHERE p.DB = DATABASE() AND p.ID <> CONNECTION_ID()`,
    );
    for (const t of ours) problems.push(`INNODB_TRX: transaction ${t.trx_id} of thread ${t.thread} still open (${t.trx_state}, ${t.locked} rows locked)`);
    const waits = await adminQuery(backend, `SELECT lock_table, lock_trx_id FROM information_schema.INNODB_LOCKS WHERE lock_table LIKE ?`, [`%${DB()}%`]);
    for (const w of waits) problems.push(`INNODB_LOCKS: ${w.lock_table} by trx ${w.lock_trx_id}`);
    for (const name of check.advisoryIds) {
      const [row] = await adminQuery(backend, 'SELECT IS_USED_LOCK(?) AS holder', [name]);
      if (row?.holder !== null && row?.holder !== undefined) problems.push(`IS_USED_LOCK(${JSON.stringify(name)}) = ${row.holder}`);
    }
  }
  problems.push(...(await rowLockProbe(backend, check.rows)));
  return problems;
}

/** Locks every given row with NOWAIT on a fresh connection: fails if any is still locked. */
async function rowLockProbe(backend: BackendName, rows: Record<string, number[]>): Promise<string[]> {
  const problems: string[] = [];
  for (const [table, ids] of Object.entries(rows)) {
    if (!ids.length) continue;
    const list = ids.map(Number).join(',');
    const sql =
      backend === 'postgres'
        ? `BEGIN; SELECT id FROM ${table} WHERE id IN (${list}) FOR UPDATE NOWAIT; ROLLBACK;`
        : `SELECT id FROM ${table} WHERE id IN (${list}) FOR UPDATE NOWAIT`;
    try {
      if (backend === 'postgres') await adminQuery(backend, sql);
      else await adminQueryInTx(sql);
    } catch (error) {
      problems.push(`rows ${table}(${list}) are still locked: ${(error as Error).message}`);
    }
  }
  return problems;
}

async function adminQueryInTx(sql: string): Promise<void> {
  const base = (await backendUrl('mariadb'))!;
  const mysql = await import('mysql2/promise');
  const conn = await mysql.createConnection({ uri: withDatabase(base) });
  try {
    await conn.query('START TRANSACTION');
    await conn.query(sql);
    await conn.query('ROLLBACK');
  } finally {
    await conn.end();
  }
}
