import type { PortConnection } from '../../orm/port';
import type { RowLockSpec } from '../../locks/row-lock-options';
import { checkRowLockAgainst } from '../check-row-lock';
import type { AdvisoryDialect, DialectCapabilities, ErrorContext, FencingDialect, ScheduledLockDialect, LockDialect } from '../dialect';
import type { LockInspector } from '../inspect';
import { PostgresAdvisory } from './advisory';
import { describePostgresRowLockHolder } from './blockers';
import { convertPostgresError, isPostgresUniqueViolation } from './errors';
import { PostgresInspector } from './inspect';
import { PostgresFencing } from './fencing';
import { PostgresScheduled } from './scheduled';

/** Transaction memo key: the lock_timeout in force before ormlock first changed it. */
const LOCK_TIMEOUT_MEMO = 'postgres.lock_timeout.original';

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
    defaultIsolation: 'READ COMMITTED',
  };
  readonly connectionIdSql = 'SELECT pg_backend_pid() AS "connectionId", txid_current()::text AS "txId"';
  readonly advisory: AdvisoryDialect = new PostgresAdvisory();
  readonly fencing: FencingDialect = new PostgresFencing();
  /** Scheduled-job locks. */
  readonly scheduled: ScheduledLockDialect = new PostgresScheduled();
  readonly inspector: LockInspector = new PostgresInspector();

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
   * `set_config('lock_timeout', …, true)` is SET LOCAL: it ends with the transaction. With a
   * transaction memo the limit is set in one statement before the locking SELECT and left in
   * force for the rest of the transaction (one statement over the unlocked read, as the budget
   * allows); a later lock without a limit first puts the original value back. Without a memo
   * the previous value is restored right after the SELECT.
   */
  async withRowLockTimeout<T>(qr: PortConnection, timeoutMs: number | undefined, work: () => Promise<T>, memo?: Map<string, unknown>): Promise<T> {
    const wanted = timeoutMs ? `${Math.ceil(timeoutMs)}ms` : undefined;
    const original = memo?.get(LOCK_TIMEOUT_MEMO) as string | undefined;
    if (!wanted) {
      if (original !== undefined) {
        await qr.query(`SELECT set_config('lock_timeout', $1, true)`, [original]);
        memo!.delete(LOCK_TIMEOUT_MEMO);
      }
      return work();
    }
    const [row] = await qr.query(`SELECT current_setting('lock_timeout') AS prev, set_config('lock_timeout', $1, true) AS now`, [wanted]);
    if (memo) {
      if (original === undefined) memo.set(LOCK_TIMEOUT_MEMO, row.prev);
      return work();
    }
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
