import type { PortConnection } from '../../orm/port';
import type { RowLockSpec } from '../../locks/row-lock-options';
import { checkRowLockAgainst } from '../check-row-lock';
import type { AdvisoryDialect, DialectCapabilities, ErrorContext, FencingDialect, ScheduledLockDialect, LockDialect } from '../dialect';
import type { LockInspector } from '../inspect';
import { MysqlAdvisory } from './advisory';
import { convertMysqlError, isMysqlUniqueViolation } from './errors';
import { MysqlInspector } from './inspect';
import { MysqlFencing } from './fencing';
import { MysqlScheduled } from './scheduled';

/** MySQL 8: FOR UPDATE / FOR SHARE [OF t] [NOWAIT | SKIP LOCKED], waits limited by innodb_lock_wait_timeout. */
export class MysqlDialect implements LockDialect {
  readonly name: string = 'mysql';
  readonly dbSystem: string = 'mysql';
  readonly capabilities: DialectCapabilities = {
    rowLockModes: new Set(['write', 'read']),
    nowait: true,
    skipLocked: true,
    lockOf: true,
    lockWaitClause: false,
    transactionAdvisoryLocks: false,
    sharedAdvisoryLocks: false,
    tokenSequences: false,
    rollbackToSavepointReleasesLocks: false,
    rollbackToSavepointReleasesRowLocks: false,
    beginRidesWithStatement: false,
    defaultIsolation: 'REPEATABLE READ',
  };
  readonly connectionIdSql = 'SELECT CONNECTION_ID() AS connectionId';
  /** GET_LOCK / RELEASE_LOCK (MariaDB inherits it unchanged). */
  readonly advisory: AdvisoryDialect = new MysqlAdvisory();
  /** Fencing-token counters (MariaDB inherits it unchanged). */
  readonly fencing: FencingDialect = new MysqlFencing();
  /** Scheduled-job locks (MariaDB inherits it unchanged). */
  readonly scheduled: ScheduledLockDialect = new MysqlScheduled();
  /** MySQL 8's performance_schema lock-wait tables. */
  readonly inspector: LockInspector = new MysqlInspector('mysql');

  checkRowLock(spec: RowLockSpec, subject: string, hasJoins = false): void {
    checkRowLockAgainst(this.capabilities, this.name, spec, subject, hasJoins);
  }

  protected modeClause(mode: RowLockSpec['mode']): string {
    return mode === 'read' ? 'FOR SHARE' : 'FOR UPDATE';
  }

  rowLockClause(spec: RowLockSpec, mainAlias: string, hasJoins: boolean): string {
    let sql = ` ${this.modeClause(spec.mode)}`;
    if (hasJoins) sql += ` OF ${mainAlias}`;
    if (spec.onLocked === 'nowait') sql += ' NOWAIT';
    else if (spec.onLocked === 'skip_locked') sql += ' SKIP LOCKED';
    return sql;
  }

  /** innodb_lock_wait_timeout is whole seconds (≥ 1): set for the session, restored after. */
  async withRowLockTimeout<T>(qr: PortConnection, timeoutMs: number | undefined, work: () => Promise<T>, _memo?: Map<string, unknown>): Promise<T> {
    if (!timeoutMs) return work();
    const [row] = await qr.query('SELECT @@SESSION.innodb_lock_wait_timeout AS prev');
    await qr.query('SET SESSION innodb_lock_wait_timeout = ?', [Math.max(1, Math.ceil(timeoutMs / 1000))]);
    try {
      return await work();
    } finally {
      await qr.query('SET SESSION innodb_lock_wait_timeout = ?', [row.prev]).catch(() => undefined);
    }
  }

  convertError(error: unknown, ctx?: ErrorContext) {
    return convertMysqlError(error, ctx);
  }

  isUniqueViolation(error: unknown): boolean {
    return isMysqlUniqueViolation(error);
  }
}
