import { parseAdvisoryComment } from '../advisory-comment';
import type { RunQuery } from '../dialect';
import { num, text, type LockInspector, type LockWait } from '../inspect';

/**
 * Waits on PostgreSQL, in the current database, in one statement: every backend waiting on a
 * lock (`pg_locks` not granted), each of its blockers (`pg_blocking_pids`) and both sides'
 * `pg_stat_activity`. A row lock waiter holds (or waits for) a `tuple` lock on the row's table
 * whose mode tells the row lock's strength; an advisory lock on one bigint shows as
 * classid = high 32 bits, objid = low 32 bits, objsubid = 1, and its key is read back from the
 * comment ormlock put in the waiting statement (src/dialects/advisory-comment.ts).
 */
const SQL = `
SELECT w.pid AS "waitingPid", w.query AS "waitingQuery",
       round(extract(epoch FROM clock_timestamp() - w.query_start) * 1000)::float8 AS "waitedMs",
       b.pid AS "blockingPid", b.query AS "blockingQuery", b.state AS "blockingState", b.wait_event_type = 'Lock' AS "blockingWaits",
       l.locktype AS "lockType", l.mode AS "lockMode",
       l.classid::text AS "classid", l.objid::text AS "objid", l.objsubid AS "objsubid",
       coalesce(t.relation, CASE WHEN l.locktype = 'relation' THEN l.relation END)::regclass::text AS "table",
       t.mode AS "tupleMode"
  FROM pg_stat_activity w
  JOIN pg_locks l ON l.pid = w.pid AND NOT l.granted
 CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
  JOIN pg_stat_activity b ON b.pid = bp.pid
  LEFT JOIN LATERAL (
       SELECT x.relation, x.mode FROM pg_locks x WHERE x.pid = w.pid AND x.locktype = 'tuple' LIMIT 1
  ) t ON true
 WHERE w.datname = current_database() AND w.pid <> pg_backend_pid()
 ORDER BY "waitedMs" DESC, w.pid, b.pid`;

/** The heavyweight lock PostgreSQL takes on a tuple for each row lock strength (heapam.c tupleLockExtraInfo). */
const TUPLE_MODE: Record<string, string> = {
  AccessExclusiveLock: 'write',
  ExclusiveLock: 'no_key_update',
  RowShareLock: 'read',
  AccessShareLock: 'key_share',
};

export class PostgresInspector implements LockInspector {
  async inspect(run: RunQuery): Promise<LockWait[]> {
    const rows = await run(SQL, []);
    return rows.map((r) => toWait(r));
  }
}

function toWait(r: Record<string, unknown>): LockWait {
  const waiting = { pid: num(r.waitingPid), query: text(r.waitingQuery), waitedMs: num(r.waitedMs) };
  const blocking = { pid: num(r.blockingPid), query: text(r.blockingQuery), state: text(r.blockingState), waiting: r.blockingWaits === true };
  const lockType = text(r.lockType);
  const table = text(r.table) ?? undefined;
  if (lockType === 'advisory') {
    const lock: LockWait['lock'] = { kind: 'advisory', mode: r.lockMode === 'ShareLock' ? 'shared' : 'exclusive' };
    if (num(r.objsubid) === 1) lock.id = int64(String(r.classid), String(r.objid));
    else lock.id = `${r.classid},${r.objid}`; // the two-int4 form
    const comment = parseAdvisoryComment(waiting.query);
    if (comment) {
      lock.key = comment.cut ? `${comment.key}…` : comment.key;
      if (comment.namespace) lock.namespace = comment.namespace;
    }
    return { waiting, blocking, lock };
  }
  if (r.tupleMode && table && (lockType === 'tuple' || lockType === 'transactionid')) {
    return { waiting, blocking, lock: { kind: 'row', table, mode: TUPLE_MODE[String(r.tupleMode)] ?? String(r.tupleMode) } };
  }
  const lock: LockWait['lock'] = { kind: 'other', mode: text(r.lockMode) ?? undefined };
  if (table) lock.table = table;
  return { waiting, blocking, lock };
}

/** The signed 64-bit key from pg_locks' two unsigned 32-bit halves. */
function int64(classid: string, objid: string): string {
  return BigInt.asIntN(64, (BigInt(classid) << 32n) | BigInt(objid)).toString();
}
