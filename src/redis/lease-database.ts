/**
 * The one place where a Redlock's `{ dataSource }` becomes "run this statement on that database,
 * with its dialect": the installation `installLocking` made for it (any ORM: a TypeORM DataSource,
 * later a MikroORM instance), resolved at each call. The statement runs on the pool, not on the
 * caller's ambient transaction: a fencing token must survive that transaction's rollback.
 */
import type { FencingDialect, LockDialect, RunQuery } from '../dialects/dialect';
import { badOption, dialectLacks, requiredOption } from '../faults/options';
import { resolveInstallation } from '../installations';

export interface LeaseDatabase {
  readonly dialect: LockDialect;
  readonly fencing: FencingDialect;
  /** One statement on a pooled connection of its own, in autocommit. */
  readonly run: RunQuery;
  /** For messages: `DataSource 'default' (postgres, test)`. */
  readonly label: string;
}

/** The database of `handle` (an installed DataSource or MikroORM instance); LockConfigError naming `where` otherwise. */
export function leaseDatabase(handle: unknown, where: string): LeaseDatabase {
  if (handle === undefined || handle === null) {
    throw requiredOption(where, 'dataSource', 'the installed DataSource that holds the fencing counters');
  }
  if (typeof handle !== 'object') {
    throw badOption(where, 'dataSource', 'a TypeORM DataSource on which `await installLocking(dataSource)` was called', handle);
  }
  const inst = resolveInstallation(where, { explicit: handle });
  const fencing = inst.dialect.fencing;
  if (!fencing) throw dialectLacks(where, inst.dialect.name, 'fencing counters');
  return { dialect: inst.dialect, fencing, run: (sql, parameters) => inst.port.query(sql, parameters), label: inst.label };
}
