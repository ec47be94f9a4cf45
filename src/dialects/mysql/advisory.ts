import type { PortConnection } from '../../orm/port';
import { LockNotAvailableError } from '../../errors';
import { boundedLockName, type ResolvedAdvisoryKey } from '../../locks/advisory-key';
import { advisoryComment } from '../advisory-comment';
import { driverCode, type AdvisoryDialect, type RunQuery } from '../dialect';
import { convertMysqlError } from './errors';

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
export class MysqlAdvisory implements AdvisoryDialect {
  readonly failedStatementAbortsTransaction = false;

  lockId(key: ResolvedAdvisoryKey): string {
    return boundedLockName(key, 64);
  }

  async lockForSession(qr: PortConnection, id: string, _shared: boolean, timeoutMs: number | undefined, key?: ResolvedAdvisoryKey): Promise<boolean> {
    const seconds = timeoutMs === undefined ? FOREVER_SECONDS : Math.max(0, timeoutMs) / 1000;
    let row: { acquired?: unknown } | undefined;
    try {
      [row] = await qr.query(`${advisoryComment(key)}SELECT GET_LOCK(?, ?) AS acquired`, [id, seconds]);
    } catch (error) {
      throw convertMysqlError(error, { key: id, timeoutMs }) ?? error;
    }
    const acquired = row?.acquired === null || row?.acquired === undefined ? null : Number(row.acquired);
    if (acquired === null) {
      throw new LockNotAvailableError(`GET_LOCK(${JSON.stringify(id)}) returned NULL: the server reported an error (connection killed?)`, { key: id });
    }
    return acquired === 1;
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
    const e = (error as { driverError?: { fatal?: unknown }; fatal?: unknown }) ?? {};
    if (e.fatal === true || e.driverError?.fatal === true) return true;
    const { code, errno, message } = driverCode(error);
    if (errno !== undefined && [1927, 2006, 2013, 1053].includes(errno)) return true;
    if (code && /^(PROTOCOL_CONNECTION_LOST|ECONNRESET|EPIPE|ECONNREFUSED|ER_CONNECTION_KILLED|ER_SERVER_SHUTDOWN)$/.test(code)) return true;
    return /closed state|connection lost|server has gone away|connection was killed/i.test(message);
  }

  isAbortedTransaction(): boolean {
    return false;
  }
}
