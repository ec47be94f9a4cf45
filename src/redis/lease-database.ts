/**
 * What the Redis leases need from a database, without knowing the ORM: its dialect and a way to
 * run one statement in autocommit. An ORM adapter registers a resolver that turns the handle a
 * user passes (`fencing: { dataSource }`) into this; src/redis never imports an adapter.
 */
import type { FencingDialect, LockDialect, RunQuery } from '../dialects/dialect';
import { LockConfigError } from '../errors';

export interface LeaseDatabase {
  readonly dialect: LockDialect;
  /**
   * Runs one statement on a pooled connection of its own, in autocommit — never on the caller's
   * ambient transaction: a fencing token must survive that transaction's rollback.
   */
  readonly run: RunQuery;
  /** For messages: what the handle is ("TypeORM DataSource postgres://…/db"). */
  readonly label: string;
}

/** Turns a handle into its database, `undefined` when the handle is not this adapter's, or throws LockConfigError. */
export type LeaseDatabaseResolver = (handle: unknown, where: string) => LeaseDatabase | undefined;

const resolvers: LeaseDatabaseResolver[] = [];

/** Called once by each ORM adapter (src/orm/<orm>/lease-database.ts). */
export function registerLeaseDatabaseResolver(resolver: LeaseDatabaseResolver): void {
  if (!resolvers.includes(resolver)) resolvers.push(resolver);
}

/** The database of `handle`, with a fencing dialect; LockConfigError naming `where` otherwise. */
export function leaseDatabase(handle: unknown, where: string): LeaseDatabase & { fencing: FencingDialect } {
  if (handle === undefined || handle === null) {
    throw new LockConfigError(`${where}: dataSource is required (the installed TypeORM DataSource that holds the fencing counters)`);
  }
  for (const resolve of resolvers) {
    const db = resolve(handle, where);
    if (!db) continue;
    const fencing = db.dialect.fencing;
    if (!fencing) throw new LockConfigError(`${where}: the ${db.dialect.name} dialect has no fencing counters`);
    return Object.assign(Object.create(null), db, { fencing });
  }
  throw new LockConfigError(
    `${where}: dataSource must be a TypeORM DataSource on which \`await installLocking(dataSource)\` was called (got ${describe(handle)})`,
  );
}

function describe(value: unknown): string {
  if (typeof value !== 'object') return typeof value;
  const name = (value as { constructor?: { name?: string } }).constructor?.name;
  return name ? `a ${name}` : 'an object';
}
