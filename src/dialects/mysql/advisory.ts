import type { PortConnection } from '../../orm/port';
import { boundedLockName, type ResolvedAdvisoryKey } from '../../locks/advisory-key';
import { advisoryComment } from '../advisory-comment';
import type { AdvisoryDialect, RunQuery } from '../dialect';
import { cancelledError } from '../lost-connection';
import { describeErrorContext } from '../postgres/errors';
import { convertMysqlError, isMysqlConnectionLost } from './errors';

/** GET_LOCK's "wait forever": MariaDB answers a negative timeout with NULL, so one year. */
const FOREVER_SECONDS = 365 * 24 * 3600;

/**
 * MySQL / MariaDB named locks: `GET_LOCK(name, seconds)` / `RELEASE_LOCK(name)` /
 * `IS_USED_LOCK(name)`. They belong to the connection (session) only: there is no
 * transaction-scoped or shared form (the strategy emulates transaction scope by releasing
 * right after the transaction ends, on the same connection). Names are at most 64 bytes
 * (`boundedLockName`). GET_LOCK returns 1 when obtained, 0 on timeout and NULL on an error
 * (e.g. the thread was killed); the timeout is in seconds and may be fractional.
 */
/** The GET_LOCK name of each resolved key (resolved keys are cached and frozen). */
const lockNames = new WeakMap<ResolvedAdvisoryKey, string>();

export class MysqlAdvisory implements AdvisoryDialect {
  readonly failedStatementAbortsTransaction = false;

  lockId(key: ResolvedAdvisoryKey): string {
    let id = lockNames.get(key);
    if (id === undefined) lockNames.set(key, (id = boundedLockName(key, 64)));
    return id;
  }

  async lockForSession(qr: PortConnection, id: string, _shared: boolean, timeoutMs: number | undefined, key?: ResolvedAdvisoryKey): Promise<boolean> {
    const seconds = timeoutMs === undefined ? FOREVER_SECONDS : Math.max(0, timeoutMs) / 1000;
    let row: { acquired?: unknown } | undefined;
    try {
      [row] = await qr.query(`${advisoryComment(key)}SELECT GET_LOCK(?, ?) AS acquired`, [id, seconds]);
    } catch (error) {
      throw convertMysqlError(error, { key: id, timeoutMs, lockWait: true }) ?? error;
    }
    const acquired = row?.acquired === null || row?.acquired === undefined ? null : Number(row.acquired);
    if (acquired === null) {
      // the wait was interrupted (KILL QUERY; a killed connection fails the statement instead)
      throw cancelledError({ lockWait: true }, `GET_LOCK(${JSON.stringify(id)}) returned NULL`, describeErrorContext({ key: id }), 'MySQL GET_LOCK', {
        key: id,
      });
    }
    return acquired === 1;
  }

  /** A CASE of `GET_LOCK(id, 0)` in order: MySQL/MariaDB evaluate its branches lazily, so it stops at the first taken (a session lock). */
  async lockFirstFree(
    qr: PortConnection,
    ids: readonly string[],
    token: string | undefined,
    key?: ResolvedAdvisoryKey,
  ): Promise<{ index: number; token: string | null } | null> {
    const params: unknown[] = [];
    let cases = '';
    ids.forEach((id, i) => {
      cases += ' WHEN GET_LOCK(?, 0) = 1 THEN ?';
      params.push(id, i);
    });
    const [row] = await qr.query(`${advisoryComment(key)}SELECT CASE${cases} ELSE NULL END AS slot, ${token ?? 'NULL'} AS token`, params);
    return row?.slot === null || row?.slot === undefined
      ? null
      : { index: Number(row.slot), token: row.token === null || row.token === undefined ? null : String(row.token) };
  }

  async unlockSession(qr: PortConnection, id: string): Promise<boolean> {
    const [row] = await qr.query('SELECT RELEASE_LOCK(?) AS released', [id]);
    return row?.released !== null && row?.released !== undefined && Number(row.released) === 1;
  }

  async isLocked(run: RunQuery, id: string): Promise<boolean> {
    const [row] = await run('SELECT IS_USED_LOCK(?) AS holder', [id]);
    return row?.holder !== null && row?.holder !== undefined;
  }

  isConnectionLost(error: unknown): boolean {
    return isMysqlConnectionLost(error);
  }

  isAbortedTransaction(): boolean {
    return false;
  }
}
