import type { LockDialect, RunQuery } from '../dialects/dialect';
import { dialectForServer } from '../dialects';
import type { LockWait } from '../dialects/inspect';
import { installationOwning } from '../installations';
import { connectionTargetOf, isTypeormDataSource } from '../orm/typeorm/connection-target';
import { openConnection, targetFromUrl, type ConnectionTarget } from './connect';
import { notInspectable } from '../faults/observe';
import { badOption, dialectLacks, notInitialized } from '../faults/options';

export type { LockWait } from '../dialects/inspect';

export interface InspectLocksOptions {
  /**
   * `'own-connection'` (default): a connection of its own beside the DataSource's pool, closed
   * afterwards, so the inspector gets in even when every pooled connection waits for a lock.
   * `'pool'`: one of the DataSource's pooled connections (no extra connection).
   */
  via?: 'own-connection' | 'pool';
}

/** What `inspectLocks` can look at: an installed DataSource or MikroORM instance, a TypeORM DataSource, a database URL or connection settings. */
export type InspectTarget = object | string | ConnectionTarget;

/**
 * Who waits on whom, now: one row per (waiting connection, blocking connection), with both
 * statements, the wait so far, and the lock — the table of a row lock, the advisory key as
 * the user wrote it. Only the current database is looked at. It never touches the lock path:
 * the keys are read from the comment ormlock puts in its lock statements.
 *
 * ```ts
 * for (const w of await inspectLocks(dataSource)) {
 *   console.log(`${w.waiting.pid} waits ${w.waiting.waitedMs} ms for ${w.lock.key ?? w.lock.table}, held by ${w.blocking.pid}`);
 * }
 * ```
 */
export async function inspectLocks(target: InspectTarget, options: InspectLocksOptions = {}): Promise<LockWait[]> {
  if (options.via !== undefined && options.via !== 'own-connection' && options.via !== 'pool') {
    throw badOption('inspectLocks', 'options.via', "'own-connection' or 'pool'", options.via);
  }
  const inst = installationOwning(target);
  if (inst && inst.port.isLive) {
    // an installed ORM instance (TypeORM DataSource, MikroORM): through the port
    if (options.via === 'pool') return inspectWith((sql, params) => inst.port.query(sql, params), inst.dialect);
    const server = inst.port.serverAddress();
    if (server.family) return inspectTarget({ ...server, family: server.family });
  }
  if (isTypeormDataSource(target)) {
    if (!target.isInitialized) throw notInitialized('inspectLocks', 'the DataSource');
    const target2 = connectionTargetOf(target);
    if (options.via === 'pool') {
      const run: RunQuery = (sql, params) => target.query(sql, params);
      return inspectWith(run, await dialectForServer(target2.family, run));
    }
    return inspectTarget(target2);
  }
  if (typeof target === 'string') return inspectTarget(targetFromUrl(target, 'inspectLocks: the URL'));
  if (target && typeof target === 'object' && ((target as ConnectionTarget).family === 'postgres' || (target as ConnectionTarget).family === 'mysql')) {
    return inspectTarget(target as ConnectionTarget);
  }
  throw notInspectable();
}

async function inspectTarget(target: ConnectionTarget): Promise<LockWait[]> {
  const conn = await openConnection(target);
  try {
    return await inspectWith(conn.run, await dialectForServer(conn.family, conn.run));
  } finally {
    await conn.close();
  }
}

/** The ORM-free core: the dialect's inspector over any way of running a statement. */
export async function inspectWith(run: RunQuery, dialect: LockDialect): Promise<LockWait[]> {
  if (!dialect.inspector) throw dialectLacks('inspectLocks', dialect.name, 'lock inspector');
  const waits = await dialect.inspector.inspect(run);
  // The real holders first (blockers that do not wait themselves), then the longest waits.
  return waits.sort((a, b) => Number(a.blocking.waiting) - Number(b.blocking.waiting) || b.waiting.waitedMs - a.waiting.waitedMs);
}
