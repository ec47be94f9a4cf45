import { driverCode, type FencingDialect, type RunQuery } from '../dialect';

const quote = (table: string) => `\`${table}\``;

/**
 * MySQL/MariaDB fencing counters in one statement per key:
 * `INSERT … VALUES (?, LAST_INSERT_ID(1)) ON DUPLICATE KEY UPDATE token = LAST_INSERT_ID(token + 1)`.
 * `LAST_INSERT_ID(expr)` makes the new value the statement's insert id, which the server sends
 * back in the OK packet of that same statement (mysql2's `insertId`): no second statement, no
 * session state to read back. The row lock of the upsert queues concurrent callers of one key.
 * The key column is binary-collated, so keys that differ only in case or trailing spaces keep
 * counters of their own.
 */
export class MysqlFencing implements FencingDialect {
  createTableSql(table: string): string[] {
    return [
      `CREATE TABLE IF NOT EXISTS ${quote(table)} (lock_key VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, token BIGINT NOT NULL) ENGINE=InnoDB`,
    ];
  }

  dropTableSql(table: string): string {
    return `DROP TABLE IF EXISTS ${quote(table)}`;
  }

  async nextToken(run: RunQuery, table: string, keys: readonly string[]): Promise<bigint> {
    const sql =
      `INSERT INTO ${quote(table)} (lock_key, token) VALUES (?, LAST_INSERT_ID(GREATEST(1, CAST(? AS SIGNED)))) ` +
      'ON DUPLICATE KEY UPDATE token = LAST_INSERT_ID(GREATEST(token + 1, CAST(? AS SIGNED)))';
    // Several keys: one upsert each, each at least the previous one's value; the earlier keys
    // are then raised to the last (largest) value if they are below it.
    const got: bigint[] = [];
    let floor = 0n;
    for (const key of keys) {
      const result = (await run(sql, [key, floor.toString(), floor.toString()])) as unknown as { insertId?: number | string | bigint };
      if (result?.insertId === undefined || result.insertId === null) {
        throw new Error(`fencing: the upsert into ${table} returned no insert id (got ${JSON.stringify(result)})`);
      }
      floor = BigInt(result.insertId);
      got.push(floor);
    }
    if (got.some((x) => x !== floor)) {
      await run(`UPDATE ${quote(table)} SET token = GREATEST(token, CAST(? AS SIGNED)) WHERE lock_key IN (${keys.map(() => '?').join(', ')})`, [
        floor.toString(),
        ...keys,
      ]);
    }
    return floor;
  }

  isMissingTable(error: unknown): boolean {
    const { code, errno } = driverCode(error);
    return errno === 1146 || code === 'ER_NO_SUCH_TABLE';
  }
}
