import type { PortConnection } from '../../orm/port';
import type { RowLockSpec } from '../../locks/row-lock-options';
import type { DialectCapabilities, FencingDialect } from '../dialect';
import { beginNotAtomic } from './begin-with-statement';
import { MariaDbFencing } from './mariadb-fencing';
import type { LockInspector } from '../inspect';
import { MysqlInspector } from './inspect';
import { MysqlDialect } from './mysql-dialect';

/**
 * MariaDB (10.6+): LOCK IN SHARE MODE instead of FOR SHARE, no `OF` (a locked join would
 * lock every joined row, so it is refused), and a per-statement `WAIT n` that limits the
 * wait without any extra statement. n is whole seconds (MariaDB truncates fractions to 0,
 * which would mean NOWAIT), so a timeoutMs is rounded up to the next second.
 */
export class MariaDbDialect extends MysqlDialect {
  override readonly name: string = 'mariadb';
  override readonly dbSystem: string = 'mariadb';
  override readonly capabilities: DialectCapabilities = {
    ...this.capabilities,
    lockOf: false,
    lockWaitClause: true,
    tokenSequences: true,
    // measured on 10.11: InnoDB releases them when the transaction did nothing before the savepoint
    // (the model-based tests hit that case), and keeps them otherwise (test/propagation.test.ts).
    // The model forgets them either way: at worst it re-locks a row its transaction still holds.
    rollbackToSavepointReleasesRowLocks: true,
    beginRidesWithStatement: true,
  };
  /** The counters of MySQL, and a token sequence beside them (MariaDB 10.3+). */
  override readonly fencing: FencingDialect = new MariaDbFencing();
  /** BEGIN NOT ATOMIC <begin>; <select>; END: BEGIN rides with a SELECT (begin-with-statement.ts). */
  readonly beginWithStatement = beginNotAtomic;
  /** information_schema.INNODB_LOCK_WAITS / INNODB_LOCKS and PROCESSLIST.TIME_MS. */
  override readonly inspector: LockInspector = new MysqlInspector('mariadb');

  override rowLockClause(spec: RowLockSpec, _mainAlias: string, _hasJoins: boolean): string {
    const mode = spec.mode === 'read' ? 'LOCK IN SHARE MODE' : 'FOR UPDATE';
    if (spec.onLocked === 'nowait') return ` ${mode} NOWAIT`;
    if (spec.onLocked === 'skip_locked') return ` ${mode} SKIP LOCKED`;
    if (spec.timeoutMs) return ` ${mode} WAIT ${Math.max(1, Math.ceil(spec.timeoutMs / 1000))}`;
    return ` ${mode}`;
  }

  override async withRowLockTimeout<T>(_qr: PortConnection, _timeoutMs: number | undefined, work: () => Promise<T>, _memo?: Map<string, unknown>): Promise<T> {
    return work(); // the WAIT clause already limits the wait
  }
}
