import type { QueryRunner } from 'typeorm';
import type { RowLockSpec } from '../../locks/row-lock-options';
import { checkRowLockAgainst } from '../check-row-lock';
import type { AdvisoryDialect, DialectCapabilities, ErrorContext, LockDialect } from '../dialect';
import { PostgresAdvisory } from './advisory';
import { describePostgresRowLockHolder } from './blockers';
import { convertPostgresError, isPostgresUniqueViolation } from './errors';

const CLAUSE: Record<RowLockSpec['mode'], string> = {
  write: 'FOR UPDATE',
  read: 'FOR SHARE',
  no_key_update: 'FOR NO KEY UPDATE',
  key_share: 'FOR KEY SHARE',
};

export class PostgresDialect implements LockDialect {
  readonly name = 'postgres';
  readonly capabilities: DialectCapabilities = {
    rowLockModes: new Set(['write', 'read', 'no_key_update', 'key_share']),
    nowait: true,
    skipLocked: true,
    lockOf: true,
    lockWaitClause: false,
    transactionAdvisoryLocks: true,
    sharedAdvisoryLocks: true,
  };
  readonly connectionIdSql = 'SELECT pg_backend_pid() AS "connectionId", txid_current()::text AS "txId"';
  readonly advisory: AdvisoryDialect = new PostgresAdvisory();

  checkRowLock(spec: RowLockSpec, subject: string, hasJoins = false): void {
    checkRowLockAgainst(this.capabilities, this.name, spec, subject, hasJoins);
  }

  rowLockClause(spec: RowLockSpec, mainAlias: string, hasJoins: boolean): string {
    let sql = ` ${CLAUSE[spec.mode]}`;
    if (hasJoins) sql += ` OF ${mainAlias}`;
    if (spec.onLocked === 'nowait') sql += ' NOWAIT';
    else if (spec.onLocked === 'skip_locked') sql += ' SKIP LOCKED';
    return sql;
  }

  /** `set_config(…, true)` is SET LOCAL: one statement before, one after to restore the previous limit. */
  async withRowLockTimeout<T>(qr: QueryRunner, timeoutMs: number | undefined, work: () => Promise<T>): Promise<T> {
    if (!timeoutMs) return work();
    const [row] = await qr.query(
      `SELECT current_setting('lock_timeout') AS prev, set_config('lock_timeout', $1, true) AS now`,
      [`${Math.ceil(timeoutMs)}ms`],
    );
    const result = await work();
    await qr.query(`SELECT set_config('lock_timeout', $1, true)`, [row.prev]);
    return result;
  }

  convertError(error: unknown, ctx?: ErrorContext) {
    return convertPostgresError(error, ctx);
  }

  isUniqueViolation(error: unknown): boolean {
    return isPostgresUniqueViolation(error);
  }

  describeRowLockHolder = describePostgresRowLockHolder;
}
