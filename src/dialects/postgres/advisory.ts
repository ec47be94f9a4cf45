import type { PortConnection } from '../../orm/port';
import type { ServerAddress } from '../dialect';
import { withOutsideClient } from './outside-client';
import { splitInt64, type ResolvedAdvisoryKey } from '../../locks/advisory-key';
import { advisoryComment } from '../advisory-comment';
import { driverCode, type AdvisoryDialect, type RunQuery } from '../dialect';
import { convertPostgresError, isPostgresConnectionLost } from './errors';

/**
 * PostgreSQL advisory locks on ONE 64-bit key (`pg_advisory_*(bigint)`), passed as a text
 * parameter cast `::bigint` (a JS number cannot carry 64 bits; no key text is ever SQL).
 *
 * - transaction scope: `pg_advisory_xact_lock[_shared]`, released by COMMIT/ROLLBACK (no
 *   release statement); `pg_try_advisory_xact_lock[_shared]` for `timeoutMs: 0`;
 * - session scope: `pg_advisory_lock[_shared]` / `pg_try_…` and `pg_advisory_unlock[_shared]`;
 * - a timeout is the server's `lock_timeout`, set with `set_config(…, true)` (SET LOCAL) in the
 *   same statement as the lock, which also restores the previous value afterwards: still one
 *   round trip, and later statements of the transaction keep their own limit. (Outside a
 *   transaction the statement is its own transaction, so the setting ends with it.) The
 *   nested `OFFSET 0` sub-selects fix the order: read old, set, lock, restore.
 */
/** The lock id of each resolved key (resolved keys are cached and frozen). */
const lockIds = new WeakMap<ResolvedAdvisoryKey, string>();

export class PostgresAdvisory implements AdvisoryDialect {
  readonly failedStatementAbortsTransaction = true;

  constructor(private readonly convert = convertPostgresError) {}

  lockId(key: ResolvedAdvisoryKey): string {
    let id = lockIds.get(key);
    if (id === undefined) lockIds.set(key, (id = key.int64.toString()));
    return id;
  }

  lockForTransaction(qr: PortConnection, id: string, shared: boolean, timeoutMs: number | undefined, key?: ResolvedAdvisoryKey): Promise<boolean> {
    return this.lock(qr, id, shared ? 'pg_advisory_xact_lock_shared' : 'pg_advisory_xact_lock', timeoutMs, advisoryComment(key));
  }

  lockForSession(qr: PortConnection, id: string, shared: boolean, timeoutMs: number | undefined, key?: ResolvedAdvisoryKey): Promise<boolean> {
    return this.lock(qr, id, shared ? 'pg_advisory_lock_shared' : 'pg_advisory_lock', timeoutMs, advisoryComment(key));
  }

  /**
   * `pg_try_advisory_xact_lock` over the ids in order under LIMIT 1: the scan stops at the first
   * taken, and only that row draws the token. The ids (signed integers) travel as one text
   * parameter, split on the server: an array parameter is expanded into a list by some drivers (knex).
   */
  async lockFirstFree(
    qr: PortConnection,
    ids: readonly string[],
    token: string | undefined,
    key?: ResolvedAdvisoryKey,
  ): Promise<{ index: number; token: string | null } | null> {
    const [row] = await qr.query(
      `${advisoryComment(key)}SELECT s.i AS "index", ${token ?? 'NULL::text'} AS "token"
         FROM unnest(string_to_array($1, ',')::bigint[]) WITH ORDINALITY AS s(id, i)
        WHERE pg_try_advisory_xact_lock(s.id) LIMIT 1`,
      [ids.join(',')],
    );
    return row ? { index: Number(row.index) - 1, token: row.token ?? null } : null;
  }

  async unlockSession(qr: PortConnection, id: string, shared: boolean): Promise<boolean> {
    const fn = shared ? 'pg_advisory_unlock_shared' : 'pg_advisory_unlock';
    const [row] = await qr.query(`SELECT ${fn}($1::bigint) AS "released"`, [id]);
    return row?.released === true;
  }

  async isLocked(run: RunQuery, id: string): Promise<boolean> {
    const { classid, objid } = splitInt64(BigInt(id));
    const [row] = await run(
      `SELECT EXISTS (
         SELECT 1 FROM pg_locks
          WHERE locktype = 'advisory' AND granted AND objsubid = 1
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND classid = $1::oid AND objid = $2::oid
       ) AS "held"`,
      [classid, objid],
    );
    return row?.held === true;
  }

  isConnectionLost(error: unknown): boolean {
    return isPostgresConnectionLost(error);
  }

  isAbortedTransaction(error: unknown): boolean {
    return driverCode(error).code === '25P02';
  }

  describeHolders(server: ServerAddress, id: string): Promise<Array<{ pid: number; query: string | null }>> {
    const { classid, objid } = splitInt64(BigInt(id));
    return withOutsideClient(server, [], async (query) => {
      const rows = await query(
        `SELECT a.pid, a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.classid = $1::oid AND l.objid = $2::oid`,
        [classid, objid],
      );
      return rows.map((r: { pid: number; query: string | null }) => ({ pid: Number(r.pid), query: r.query }));
    });
  }

  private lock(qr: PortConnection, id: string, fn: string, timeoutMs: number | undefined, comment = ''): Promise<boolean> {
    // waiting without a limit (the common case): one async function from the statement to the answer
    if (timeoutMs === undefined) return this.lockWaiting(qr, `${comment}SELECT ${fn}($1::bigint)`, id);
    return this.lockWithin(qr, id, fn, timeoutMs, comment);
  }

  private lockWaiting(qr: PortConnection, sql: string, id: string): Promise<boolean> {
    // a `then`, not an async function: one promise per lock instead of the function's and its await's
    try {
      return qr.query(sql, [id]).then(
        () => true,
        (error: unknown) => {
          throw this.converted(error, undefined);
        },
      );
    } catch (error) {
      return Promise.reject(this.converted(error, undefined));
    }
  }

  private async lockWithin(qr: PortConnection, id: string, fn: string, timeoutMs: number, comment: string): Promise<boolean> {
    if (timeoutMs === 0) {
      const tryFn = fn.replace(/^pg_advisory_/, 'pg_try_advisory_');
      const [row] = await this.run(qr, `${comment}SELECT ${tryFn}($1::bigint) AS "acquired"`, [id], timeoutMs);
      return row?.acquired === true;
    }
    try {
      await this.run(
        qr,
        `${comment}SELECT set_config('lock_timeout', l.prev, true) IS NOT NULL AS "acquired"
           FROM (SELECT s.prev, ${fn}($1::bigint) IS NULL AS done
                   FROM (SELECT current_setting('lock_timeout') AS prev, set_config('lock_timeout', $2, true) AS applied OFFSET 0) s
                 OFFSET 0) l`,
        [id, `${Math.max(1, Math.ceil(timeoutMs))}ms`],
        timeoutMs,
      );
      return true;
    } catch (error) {
      if (driverCode(error).code === '55P03') return false;
      throw error;
    }
  }

  private async run(qr: PortConnection, sql: string, params: unknown[], timeoutMs: number | undefined): Promise<any[]> {
    try {
      return await qr.query(sql, params);
    } catch (error) {
      throw this.converted(error, timeoutMs);
    }
  }

  /** A lock statement's failure: a timeout as is (the caller decides), anything else converted. */
  private converted(error: unknown, timeoutMs: number | undefined): unknown {
    if (driverCode(error).code === '55P03') return error;
    return this.convert(error, { timeoutMs, lockWait: true }) ?? error;
  }
}
