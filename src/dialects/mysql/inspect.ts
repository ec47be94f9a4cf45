import { parseAdvisoryComment } from '../advisory-comment';
import type { RunQuery } from '../dialect';
import { num, text, type LockInspector, type LockWait } from '../inspect';

/**
 * Waits on MySQL / MariaDB:
 * - row locks: InnoDB's lock-wait table joined with `INNODB_TRX` (both transactions'
 *   connection ids) and `PROCESSLIST` (their statements). MariaDB keeps
 *   `information_schema.INNODB_LOCK_WAITS` / `INNODB_LOCKS`; MySQL 8 moved them to
 *   `performance_schema.data_lock_waits` / `data_locks`.
 * - named locks (GET_LOCK): connections in state 'User lock'; the name is read from the
 *   waiting statement's `GET_LOCK('…'` literal, the holder from `IS_USED_LOCK(name)` (a
 *   parameter), and the key as the user wrote it from ormlock's comment.
 * Only waits in the connection's current database (if it has one) are listed.
 */
/**
 * InnoDB fills its information_schema lock tables from a cache that is refreshed only when
 * nobody read it in the last 0.1 s (so polling faster than that sees a frozen picture), and
 * it may still show a wait that just ended. PROCESSLIST is live: a wait is kept only while
 * the waiting connection still runs the very statement InnoDB reports (trx_query is cut at
 * 1024 characters).
 */
const STILL_WAITING = "wp.COMMAND <> 'Sleep' AND r.trx_query IS NOT NULL AND LEFT(wp.INFO, CHAR_LENGTH(r.trx_query)) = r.trx_query";

const MARIADB_ROW_WAITS = `
SELECT r.trx_mysql_thread_id AS waitingPid, wp.INFO AS waitingQuery,
       COALESCE(wp.TIME_MS, TIMESTAMPDIFF(MICROSECOND, r.trx_wait_started, NOW(6)) / 1000) AS waitedMs,
       b.trx_mysql_thread_id AS blockingPid, COALESCE(bp.INFO, b.trx_query) AS blockingQuery, bp.COMMAND AS blockingCommand,
       b.trx_state = 'LOCK WAIT' AS blockingWaits,
       rl.lock_table AS lockTable, rl.lock_mode AS lockMode, rl.lock_type AS lockType, DATABASE() AS currentDb
  FROM information_schema.INNODB_LOCK_WAITS lw
  JOIN information_schema.INNODB_TRX r ON r.trx_id = lw.requesting_trx_id
  JOIN information_schema.INNODB_TRX b ON b.trx_id = lw.blocking_trx_id
  LEFT JOIN information_schema.INNODB_LOCKS rl ON rl.lock_id = lw.requested_lock_id
  LEFT JOIN information_schema.PROCESSLIST wp ON wp.ID = r.trx_mysql_thread_id
  LEFT JOIN information_schema.PROCESSLIST bp ON bp.ID = b.trx_mysql_thread_id
 WHERE ${STILL_WAITING}
   AND (DATABASE() IS NULL OR wp.DB = DATABASE() OR rl.lock_table LIKE CONCAT('\`', DATABASE(), '\`.%'))
 ORDER BY waitedMs DESC`;

const MYSQL_ROW_WAITS = `
SELECT r.trx_mysql_thread_id AS waitingPid, wp.INFO AS waitingQuery,
       TIMESTAMPDIFF(MICROSECOND, r.trx_wait_started, NOW(6)) / 1000 AS waitedMs,
       b.trx_mysql_thread_id AS blockingPid, COALESCE(bp.INFO, b.trx_query) AS blockingQuery, bp.COMMAND AS blockingCommand,
       b.trx_state = 'LOCK WAIT' AS blockingWaits,
       CONCAT('\`', rl.OBJECT_SCHEMA, '\`.\`', rl.OBJECT_NAME, '\`') AS lockTable, rl.LOCK_MODE AS lockMode, rl.LOCK_TYPE AS lockType,
       DATABASE() AS currentDb
  FROM performance_schema.data_lock_waits lw
  JOIN information_schema.INNODB_TRX r ON r.trx_id = lw.REQUESTING_ENGINE_TRANSACTION_ID
  JOIN information_schema.INNODB_TRX b ON b.trx_id = lw.BLOCKING_ENGINE_TRANSACTION_ID
  LEFT JOIN performance_schema.data_locks rl ON rl.ENGINE_LOCK_ID = lw.REQUESTING_ENGINE_LOCK_ID
  LEFT JOIN information_schema.PROCESSLIST wp ON wp.ID = r.trx_mysql_thread_id
  LEFT JOIN information_schema.PROCESSLIST bp ON bp.ID = b.trx_mysql_thread_id
 WHERE ${STILL_WAITING}
   AND (DATABASE() IS NULL OR wp.DB = DATABASE() OR rl.OBJECT_SCHEMA = DATABASE())
 ORDER BY waitedMs DESC`;

const USER_LOCK_WAITS = (timeMs: string) => `
SELECT ID AS waitingPid, INFO AS waitingQuery, ${timeMs} AS waitedMs
  FROM information_schema.PROCESSLIST
 WHERE STATE IN ('User lock', 'Waiting for user level lock') AND ID <> CONNECTION_ID()
   AND (DATABASE() IS NULL OR DB = DATABASE())
 ORDER BY waitedMs DESC`;

const HOLDERS = (n: number) => `
SELECT p.ID AS pid, p.INFO AS query, p.COMMAND AS command, t.trx_id AS trx,
       (t.trx_state = 'LOCK WAIT' OR p.STATE IN ('User lock', 'Waiting for user level lock')) AS waits
  FROM information_schema.PROCESSLIST p
  LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
 WHERE p.ID IN (${Array.from({ length: n }, () => '?').join(', ')})`;

export class MysqlInspector implements LockInspector {
  /** `mariadb`: information_schema lock-wait tables and PROCESSLIST.TIME_MS; `mysql`: MySQL 8's performance_schema. */
  constructor(private readonly flavor: 'mariadb' | 'mysql') {}

  async inspect(run: RunQuery): Promise<LockWait[]> {
    const rowWaits = await run(this.flavor === 'mariadb' ? MARIADB_ROW_WAITS : MYSQL_ROW_WAITS, []);
    const waits: LockWait[] = rowWaits.map(toRowWait);
    waits.push(...(await this.userLockWaits(run)));
    return waits.sort((a, b) => b.waiting.waitedMs - a.waiting.waitedMs);
  }

  private async userLockWaits(run: RunQuery): Promise<LockWait[]> {
    const waiters = await run(USER_LOCK_WAITS(this.flavor === 'mariadb' ? 'TIME_MS' : 'TIME * 1000'), []);
    const named = waiters
      .map((w) => ({ w, name: getLockName(text(w.waitingQuery)) }))
      .filter((x): x is { w: Record<string, unknown>; name: string } => x.name !== undefined);
    if (named.length === 0) return [];
    // One statement for every holder: IS_USED_LOCK(name) with the names as parameters.
    const [holderRow] = await run(
      `SELECT ${named.map((_, i) => `IS_USED_LOCK(?) AS h${i}`).join(', ')}`,
      named.map((x) => x.name),
    );
    const holderIds = named.map((_, i) => holderRow?.[`h${i}`]);
    const ids = [...new Set(holderIds.filter((h) => h !== null && h !== undefined).map(num))];
    const holders = new Map<number, Record<string, unknown>>();
    if (ids.length) for (const h of await run(HOLDERS(ids.length), ids)) holders.set(num(h.pid), h);
    const out: LockWait[] = [];
    named.forEach(({ w, name }, i) => {
      const holderId = holderIds[i];
      if (holderId === null || holderId === undefined) return; // released meanwhile
      const h = holders.get(num(holderId));
      const waitingQuery = text(w.waitingQuery);
      const lock: LockWait['lock'] = { kind: 'advisory', mode: 'exclusive', id: name };
      const comment = parseAdvisoryComment(waitingQuery);
      if (comment) {
        lock.key = comment.cut ? `${comment.key}…` : comment.key;
        if (comment.namespace) lock.namespace = comment.namespace;
      }
      out.push({
        waiting: { pid: num(w.waitingPid), query: waitingQuery, waitedMs: Math.round(num(w.waitedMs)) },
        blocking: {
          pid: num(holderId),
          query: h ? text(h.query) : null,
          state: h ? state(text(h.command), h.trx != null) : null,
          waiting: num(h?.waits) === 1,
        },
        lock,
      });
    });
    return out;
  }
}

function toRowWait(r: Record<string, unknown>): LockWait {
  const { schema, table } = splitTable(text(r.lockTable));
  const lock: LockWait['lock'] = { kind: String(r.lockType).toUpperCase() === 'RECORD' ? 'row' : 'other' };
  if (table) lock.table = schema && schema !== text(r.currentDb) ? `${schema}.${table}` : table;
  const mode = text(r.lockMode);
  if (mode) lock.mode = lock.kind === 'row' ? (/^X/.test(mode) ? 'write' : /^S/.test(mode) ? 'read' : mode) : mode;
  return {
    waiting: { pid: num(r.waitingPid), query: text(r.waitingQuery), waitedMs: Math.round(num(r.waitedMs)) },
    blocking: { pid: num(r.blockingPid), query: text(r.blockingQuery), state: state(text(r.blockingCommand), true), waiting: num(r.blockingWaits) === 1 },
    lock,
  };
}

/** PROCESSLIST's COMMAND in PostgreSQL's words ('idle in transaction', 'active', …). */
function state(command: string | null, inTransaction: boolean): string | null {
  if (command === null) return null;
  if (command === 'Sleep') return inTransaction ? 'idle in transaction' : 'idle';
  if (command === 'Query' || command === 'Execute') return 'active';
  return command.toLowerCase();
}

/** `` `db`.`table` `` → its parts (backticks doubled inside names). */
function splitTable(value: string | null): { schema?: string; table?: string } {
  if (!value) return {};
  const m = /^`((?:[^`]|``)*)`\.`((?:[^`]|``)*)`$/.exec(value);
  if (!m) return { table: value };
  return { schema: m[1].replace(/``/g, '`'), table: m[2].replace(/``/g, '`') };
}

/** The name in a `GET_LOCK('…', n)` statement as the client formatted it (mysql2 / sqlstring escapes). */
export function getLockName(sql: string | null): string | undefined {
  if (!sql) return undefined;
  const m = /GET_LOCK\s*\(\s*'((?:[^'\\]|\\.|'')*)'/i.exec(sql);
  if (!m) return undefined;
  const ESC: Record<string, string> = { '0': '\0', b: '\b', t: '\t', n: '\n', r: '\r', Z: '\x1a' };
  return m[1].replace(/''/g, "'").replace(/\\(.)/gs, (_, c: string) => ESC[c] ?? c);
}
