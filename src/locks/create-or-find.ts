import { ambientTx } from '../context/store';
import { DeadlockError } from '../errors';
import { installationOwning, resolveInstallation } from '../installations';
import type { PortConnection } from '../orm/port';
import { inSavepoint } from './savepoint';
import { badOption } from '../faults/options';
import { notAnInstalledRepository, uniqueButNoRow } from '../faults/unique';

/** Sends of an autocommit INSERT that lost a deadlock (each one a transaction of its own). */
const AUTOCOMMIT_DEADLOCK_ATTEMPTS = 5;

/** A repository of T (TypeORM's Repository, MikroORM's EntityRepository): what `createOrFind` infers T from. */
export interface RepositoryLike<T> {
  find(...args: any[]): Promise<T[]>;
}

/** A MikroORM EntityRepository<T> (typing only: T from what `create` returns, not from `find`'s Loaded<T, …>). */
export interface EntityRepositoryLike<T> {
  getEntityName(): string;
  create(data: any, options?: any): T;
}

/**
 * Rails' `create_or_find_by`: inserts `{ ...defaults, ...where }`; if a unique constraint
 * (PG 23505, MySQL 1062) says the row exists, reads and returns the existing row. Concurrent
 * callers all get the same row, and exactly one row is created.
 *
 * Inside an ambient transaction the INSERT runs in a savepoint, so the violation leaves the
 * transaction usable; outside one it is a single INSERT (plus one SELECT on a conflict), sent
 * again when the database chose it as a deadlock victim (it was undone whole). Inside a
 * transaction a deadlock or a rollback-on-timeout comes out as DeadlockError / LockTimeoutError
 * (retryable by `retryOnConflict`), never as an error about the savepoint.
 * A unique constraint, unique index or the primary key must cover the `where` columns, or it
 * throws `LockConfigError` (without one the database cannot refuse a duplicate).
 *
 * ```ts
 * const user = await createOrFind(users, { email }, { name: 'New user' });
 * ```
 */
export function createOrFind<T extends object>(repository: EntityRepositoryLike<T>, where: Partial<T>, defaults?: Partial<T>): Promise<T>;
export function createOrFind<T extends object>(repository: RepositoryLike<T>, where: Partial<T>, defaults?: Partial<T>): Promise<T>;
export async function createOrFind<T extends object>(
  repository: RepositoryLike<T> | EntityRepositoryLike<T>,
  where: Partial<T>,
  defaults: Partial<T> = {},
): Promise<T> {
  if (!repository || typeof repository !== 'object') {
    throw badOption('createOrFind(repository, where, defaults?)', 'repository', 'a TypeORM Repository or MikroORM EntityRepository', repository);
  }
  const owner = installationOwning(repository);
  const inst = owner ?? resolveInstallation('createOrFind()', { explicit: repository });
  const target = inst.port.repositoryTarget?.(repository);
  if (!target) throw notAnInstalledRepository();
  const entity = inst.entity(target, 'createOrFind()');
  const caller = `createOrFind(${entity.name})`;
  if (where === null || typeof where !== 'object' || Array.isArray(where)) {
    throw badOption(caller, 'where', 'an object of column values, e.g. { email }', where, { entity: entity.name });
  }
  if (defaults === null || typeof defaults !== 'object' || Array.isArray(defaults)) {
    throw badOption(caller, 'defaults', 'an object', defaults, { entity: entity.name });
  }
  inst.port.requireUniqueCover(entity, where as Record<string, unknown>, caller);

  const tx = ambientTx(inst);
  const connection: PortConnection | undefined = tx?.connection;
  const values = { ...(defaults as object), ...where } as Record<string, unknown>;
  let violation: unknown;
  for (let attempt = 1; violation === undefined; attempt++) {
    try {
      const insert = () => inst.port.insertRow(connection, entity, values);
      return (await (connection ? inSavepoint(inst, connection, 'ormlock_create_or_find', insert) : insert())) as T;
    } catch (error) {
      if (inst.dialect.isUniqueViolation(error)) {
        violation = error;
        break;
      }
      const converted = inst.dialect.convertError(error) ?? error;
      // Outside a transaction the INSERT was a transaction of its own: one that lost a deadlock
      // (InnoDB, when a first inserter of the key rolls back under waiting ones) was undone whole
      // and can simply be sent again. Inside one, the deadlock ended the caller's transaction:
      // DeadlockError, for @RetryOnConflict / retryOnConflict.
      if (connection || !(converted instanceof DeadlockError) || attempt >= AUTOCOMMIT_DEADLOCK_ATTEMPTS) throw converted;
      await new Promise((r) => setTimeout(r, Math.random() * 5 * 2 ** attempt));
    }
  }
  const found = await inst.port.findRow(connection, entity, where as Record<string, unknown>);
  if (found) return found as T;
  if (connection) {
    // A MySQL REPEATABLE READ snapshot may predate the row's commit: a locking read is a current read.
    const current = await inst.port.findRow(connection, entity, where as Record<string, unknown>, 'read');
    if (current) return current as T;
  }
  throw uniqueButNoRow(caller, entity.name, where, violation);
}
