import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { ScheduledLockDialect } from '../dialects/dialect';
import type { LockConfigError } from '../errors';
import { dialectLacks } from '../faults/options';
import { missingTable } from '../faults/migrations';
import { checkFencingTable } from '../redis/fencing';
import { resolveInstallation, type Installation } from '../installations';
import { DEFAULT_SCHEDULED_TABLE } from './scheduled-options';
import type { ScheduledHold, ScheduledStorage } from './scheduled-storage';

/** Who holds a run, as the table shows it: host, process, and a random part unique per run. */
export function holderId(): string {
  return `${hostname().slice(0, 100)}:${process.pid}:${randomBytes(8).toString('hex')}`;
}

/**
 * Scheduled-job locks in the application's database (see the dialects' scheduled.ts): each
 * acquisition and each release is one statement on the pool, in autocommit — never on the
 * caller's ambient transaction (a run's lock must not roll back with it), and with no session
 * state, so it works behind a transaction-mode pooler.
 */
export class DatabaseScheduledStorage implements ScheduledStorage {
  readonly label: string;
  private readonly inst: Installation;
  private readonly scheduled: ScheduledLockDialect;

  constructor(
    handle: unknown,
    readonly table: string,
    caller: string,
  ) {
    checkFencingTable(table, caller);
    this.inst = resolveInstallation(caller, { explicit: handle });
    const scheduled = this.inst.dialect.scheduled;
    if (!scheduled) throw dialectLacks(caller, this.inst.dialect.name, 'scheduled-job locks');
    this.scheduled = scheduled;
    this.label = this.inst.label;
  }

  async tryAcquire(name: string, lockAtMostForMs: number): Promise<ScheduledHold | null> {
    const holder = holderId();
    const run = (sql: string, parameters?: unknown[]) => this.inst.port.query(sql, parameters);
    const started = Date.now();
    let runs: number;
    try {
      runs = await this.scheduled.tryAcquire(run, this.table, name, holder, lockAtMostForMs);
    } catch (error) {
      throw this.missingTable(error) ?? this.inst.dialect.convertError(error) ?? error;
    }
    if (!runs) {
      this.inst.emit({ type: 'not_available', kind: 'scheduled', target: name, waitedMs: Date.now() - started });
      return null;
    }
    this.inst.emit({ type: 'acquired', kind: 'scheduled', target: name, waitedMs: Date.now() - started });
    return {
      token: BigInt(runs),
      validMs: lockAtMostForMs,
      end: async (lockAtLeastForMs) => {
        await this.scheduled.release(run, this.table, name, holder, lockAtLeastForMs);
        this.inst.emit({ type: 'released', kind: 'scheduled', target: name, heldMs: Date.now() - started });
      },
    };
  }

  private missingTable(error: unknown): LockConfigError | undefined {
    if (!this.scheduled.isMissingTable(error)) return undefined;
    return missingTable(
      'withScheduledLock',
      `the table ${this.table} on ${this.label}`,
      'createScheduledLockTable',
      this.table,
      DEFAULT_SCHEDULED_TABLE,
      error,
    );
  }
}
