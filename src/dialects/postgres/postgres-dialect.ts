import type { PortConnection } from '../../orm/port';
import type { RowLockSpec } from '../../locks/row-lock-options';
import { checkRowLockAgainst } from '../check-row-lock';
import type { AdvisoryDialect, BoundedRowLock, DialectCapabilities, ErrorContext, FencingDialect, ScheduledLockDialect, LockDialect } from '../dialect';
import type { LockInspector } from '../inspect';
import { PostgresAdvisory } from './advisory';
import { beginWithStatement } from './begin-with-statement';
import { describePostgresRowLockHolder } from './blockers';
import { convertPostgresError, isPostgresUniqueViolation } from './errors';
import { PostgresInspector } from './inspect';
import { PostgresFencing } from './fencing';
import { PostgresScheduled } from './scheduled';

/** The limit as `lock_timeout` takes it. */
const lockTimeoutValue = (timeoutMs: number) => `${Math.ceil(timeoutMs)}ms`;

/**
 * One statement: the outer row (`ormlock_t`) sets lock_timeout and keeps the previous value; the
 * locking SELECT runs as the inner side of a nested loop (a LEFT JOIN LATERAL … ON true has no
 * other plan), so after it; the outer projection puts the previous value back once the SELECT
 * has its row (or found none: the NULL row). A timeout fails the statement, which aborts the
 * transaction or rolls back to its savepoint: either way the setting is undone.
 */
const BOUNDED_ROW_LOCK: BoundedRowLock = {
  wrap: (sql, n) =>
    "SELECT ormlock_r.*, set_config('lock_timeout', ormlock_t.prev, true) AS ormlock_restored " +
    `FROM (SELECT current_setting('lock_timeout') AS prev, set_config('lock_timeout', $${n + 1}, true) AS now) ormlock_t ` +
    `LEFT JOIN LATERAL (${sql}) ormlock_r ON true`,
  value: lockTimeoutValue,
};

const CLAUSE: Record<RowLockSpec['mode'], string> = {
  write: 'FOR UPDATE',
  read: 'FOR SHARE',
  no_key_update: 'FOR NO KEY UPDATE',
  key_share: 'FOR KEY SHARE',
};

export class PostgresDialect implements LockDialect {
  readonly name = 'postgres';
  readonly dbSystem: string = 'postgresql';
  readonly capabilities: DialectCapabilities = {
    rowLockModes: new Set(['write', 'read', 'no_key_update', 'key_share']),
    nowait: true,
    skipLocked: true,
    lockOf: true,
    lockWaitClause: false,
    transactionAdvisoryLocks: true,
    sharedAdvisoryLocks: true,
    tokenSequences: true,
    rollbackToSavepointReleasesLocks: true,
    rollbackToSavepointReleasesRowLocks: true,
    beginRidesWithStatement: true,
    defaultIsolation: 'READ COMMITTED',
  };
  readonly connectionIdSql = 'SELECT pg_backend_pid() AS "connectionId", txid_current()::text AS "txId"';
  readonly advisory: AdvisoryDialect = new PostgresAdvisory();
  readonly fencing: FencingDialect = new PostgresFencing();
  /** Scheduled-job locks. */
  readonly scheduled: ScheduledLockDialect = new PostgresScheduled();
  readonly inspector: LockInspector = new PostgresInspector();
  readonly boundedRowLock: BoundedRowLock = BOUNDED_ROW_LOCK;
  readonly beginWithStatement = beginWithStatement;

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

  /**
   * `set_config('lock_timeout', …, true)` is SET LOCAL: with a limit, it is set in one statement
   * before the locking SELECT and put back right after it, so the limit lasts for this lock only
   * (a later statement of the transaction is not limited). Reads the port can issue in one
   * statement use `boundedRowLock` instead, at no extra statement.
   */
  async withRowLockTimeout<T>(qr: PortConnection, timeoutMs: number | undefined, work: () => Promise<T>, _memo?: Map<string, unknown>): Promise<T> {
    if (!timeoutMs) return work();
    const [row] = await qr.query(`SELECT current_setting('lock_timeout') AS prev, set_config('lock_timeout', $1, true) AS now`, [lockTimeoutValue(timeoutMs)]);
    try {
      return await work();
    } finally {
      // after a failed statement the transaction (or savepoint) is rolled back with the setting: the restore may fail then
      await qr.query(`SELECT set_config('lock_timeout', $1, true)`, [row.prev]).catch(() => undefined);
    }
  }

  convertError(error: unknown, ctx?: ErrorContext) {
    return convertPostgresError(error, ctx);
  }

  isUniqueViolation(error: unknown): boolean {
    return isPostgresUniqueViolation(error);
  }

  describeRowLockHolder = describePostgresRowLockHolder;
}
