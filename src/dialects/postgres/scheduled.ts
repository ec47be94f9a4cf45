import { driverCode, type RunQuery, type ScheduledLockDialect } from '../dialect';

const quote = (table: string) => `"${table}"`;

/**
 * PostgreSQL scheduled-job locks. Acquisition is one `INSERT … ON CONFLICT (name) DO UPDATE …
 * WHERE s.locked_until <= statement_timestamp() RETURNING runs`: a free (or expired) row is taken
 * and a row is returned; a held one is left as it is and nothing is returned. The row lock of the
 * upsert queues concurrent callers, and READ COMMITTED re-checks the WHERE on the row the winner
 * committed, so exactly one of them gets a row. `statement_timestamp()` (not `now()`, the start
 * of a surrounding transaction) is the server's clock.
 */
export class PostgresScheduled implements ScheduledLockDialect {
  createTableSql(table: string): string[] {
    return [
      `CREATE TABLE IF NOT EXISTS ${quote(table)} (name varchar(191) PRIMARY KEY, locked_until timestamptz NOT NULL, ` +
        'locked_at timestamptz NOT NULL, locked_by varchar(255) NOT NULL, runs bigint NOT NULL)',
    ];
  }

  dropTableSql(table: string): string {
    return `DROP TABLE IF EXISTS ${quote(table)}`;
  }

  async tryAcquire(run: RunQuery, table: string, name: string, holder: string, lockAtMostForMs: number): Promise<number> {
    const rows = await run(
      `INSERT INTO ${quote(table)} AS s (name, locked_until, locked_at, locked_by, runs) ` +
        "VALUES ($1, statement_timestamp() + $2::bigint * interval '1 millisecond', statement_timestamp(), $3, 1) " +
        'ON CONFLICT (name) DO UPDATE SET locked_until = EXCLUDED.locked_until, locked_at = EXCLUDED.locked_at, ' +
        'locked_by = EXCLUDED.locked_by, runs = s.runs + 1 WHERE s.locked_until <= statement_timestamp() RETURNING runs',
      [name, String(lockAtMostForMs), holder],
    );
    return rows.length ? Number(rows[0].runs) : 0;
  }

  async release(run: RunQuery, table: string, name: string, holder: string, lockAtLeastForMs: number): Promise<void> {
    await run(
      `UPDATE ${quote(table)} SET locked_until = GREATEST(statement_timestamp(), locked_at + $3::bigint * interval '1 millisecond') ` +
        'WHERE name = $1 AND locked_by = $2',
      [name, holder, String(lockAtLeastForMs)],
    );
  }

  isMissingTable(error: unknown): boolean {
    return driverCode(error).code === '42P01';
  }
}
