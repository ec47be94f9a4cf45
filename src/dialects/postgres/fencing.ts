import { driverCode, type FencingDialect, type RunQuery } from '../dialect';

const quote = (table: string) => `"${table}"`;

/**
 * PostgreSQL fencing counters: `INSERT … ON CONFLICT (lock_key) DO UPDATE SET token = token + 1
 * RETURNING token` moves the row and hands the new value out in one statement. The row lock taken
 * by the DO UPDATE makes concurrent callers of one key queue on the row, each seeing the other's
 * committed value (READ COMMITTED re-checks the conflicting row), so no two get the same token.
 */
export class PostgresFencing implements FencingDialect {
  createTableSql(table: string): string[] {
    return [
      `CREATE TABLE IF NOT EXISTS ${quote(table)} (lock_key text PRIMARY KEY, token bigint NOT NULL)`,
      `CREATE SEQUENCE IF NOT EXISTS ${quote(`${table}_seq`)}`,
    ];
  }

  /** nextval is never rolled back and locks nothing until commit: safe inside any transaction. */
  nextSequenceSql(table: string): string {
    return `SELECT ${this.nextSequenceExpression(table)} AS token`;
  }

  nextSequenceExpression(table: string): string {
    return `nextval('${quote(`${table}_seq`)}')::text`;
  }

  dropSequenceSql(table: string): string {
    return `DROP SEQUENCE IF EXISTS ${quote(`${table}_seq`)}`;
  }

  dropTableSql(table: string): string {
    return `DROP TABLE IF EXISTS ${quote(table)}`;
  }

  async nextToken(run: RunQuery, table: string, keys: readonly string[]): Promise<bigint> {
    const t = quote(table);
    if (keys.length === 1) {
      const rows = await run(
        `INSERT INTO ${t} AS f (lock_key, token) VALUES ($1, 1) ON CONFLICT (lock_key) DO UPDATE SET token = f.token + 1 RETURNING token`,
        [keys[0]],
      );
      return BigInt(rows[0].token);
    }
    // Every key gets max(counters of the keys) + 1; under concurrency a row may have moved past
    // that snapshot (GREATEST keeps it increasing), and then the others are raised to the
    // largest value before the token is handed out.
    const rows = await run(
      `WITH m AS (SELECT COALESCE(MAX(token), 0) + 1 AS t FROM ${t} WHERE lock_key = ANY($1::text[]))
       INSERT INTO ${t} AS f (lock_key, token) SELECT k, m.t FROM unnest($1::text[]) AS k, m
       ON CONFLICT (lock_key) DO UPDATE SET token = GREATEST(f.token + 1, EXCLUDED.token) RETURNING token`,
      [keys],
    );
    const tokens = rows.map((r: { token: string }) => BigInt(r.token));
    const max = tokens.reduce((a: bigint, b: bigint) => (b > a ? b : a));
    if (tokens.some((x: bigint) => x !== max)) {
      await run(`UPDATE ${t} SET token = GREATEST(token, $2::bigint) WHERE lock_key = ANY($1::text[])`, [keys, max.toString()]);
    }
    return max;
  }

  isMissingTable(error: unknown): boolean {
    return driverCode(error).code === '42P01';
  }
}
