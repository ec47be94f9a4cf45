import { driverCode, type RunQuery, type ScheduledLockDialect } from '../dialect';
import { unexpectedResult } from '../../faults/scheduled';

const quote = (table: string) => `\`${table}\``;

/**
 * MySQL/MariaDB scheduled-job locks, acquired in one statement:
 * `INSERT … ON DUPLICATE KEY UPDATE` whose assignments are conditional on
 * `locked_until <= UTC_TIMESTAMP(3)` (assigned last, so every condition reads the old value).
 * Which one happened is told by the statement itself, not by its affected-rows count (which
 * depends on the client's CLIENT_FOUND_ROWS flag): `runs` is assigned through `LAST_INSERT_ID(…)`
 * — the run's number when the lock is taken, `LAST_INSERT_ID(0)` when it is held — and the server
 * sends that value back in the OK packet of this very statement (the driver's `insertId`).
 * UTC_TIMESTAMP and DATETIME keep the comparison free of the session's time zone.
 */
export class MysqlScheduled implements ScheduledLockDialect {
  createTableSql(table: string): string[] {
    return [
      `CREATE TABLE IF NOT EXISTS ${quote(table)} (name VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, ` +
        'locked_until DATETIME(3) NOT NULL, locked_at DATETIME(3) NOT NULL, locked_by VARCHAR(255) NOT NULL, runs BIGINT NOT NULL) ENGINE=InnoDB',
    ];
  }

  dropTableSql(table: string): string {
    return `DROP TABLE IF EXISTS ${quote(table)}`;
  }

  async tryAcquire(run: RunQuery, table: string, name: string, holder: string, lockAtMostForMs: number): Promise<number> {
    const free = 'locked_until <= UTC_TIMESTAMP(3)';
    const result = (await run(
      `INSERT INTO ${quote(table)} (name, locked_until, locked_at, locked_by, runs) ` +
        'VALUES (?, UTC_TIMESTAMP(3) + INTERVAL CAST(? AS SIGNED) * 1000 MICROSECOND, UTC_TIMESTAMP(3), ?, LAST_INSERT_ID(1)) ' +
        `ON DUPLICATE KEY UPDATE runs = IF(${free}, LAST_INSERT_ID(runs + 1), runs + LAST_INSERT_ID(0)), ` +
        `locked_by = IF(${free}, VALUES(locked_by), locked_by), locked_at = IF(${free}, VALUES(locked_at), locked_at), ` +
        `locked_until = IF(${free}, VALUES(locked_until), locked_until)`,
      [name, String(lockAtMostForMs), holder],
    )) as unknown as { insertId?: number | string | bigint };
    if (result?.insertId === undefined || result.insertId === null) {
      throw unexpectedResult(`the scheduled lock's upsert into ${table}`, 'no insert id', result);
    }
    return Number(result.insertId);
  }

  async release(run: RunQuery, table: string, name: string, holder: string, lockAtLeastForMs: number): Promise<void> {
    await run(
      `UPDATE ${quote(table)} SET locked_until = GREATEST(UTC_TIMESTAMP(3), locked_at + INTERVAL CAST(? AS SIGNED) * 1000 MICROSECOND) ` +
        'WHERE name = ? AND locked_by = ?',
      [String(lockAtLeastForMs), name, holder],
    );
  }

  isMissingTable(error: unknown): boolean {
    const { code, errno } = driverCode(error);
    return errno === 1146 || code === 'ER_NO_SUCH_TABLE';
  }
}
