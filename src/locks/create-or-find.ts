import type { DeepPartial, ObjectLiteral, Repository } from 'typeorm';
import { createOrFindRow } from '../orm/typeorm/create-or-find';

/**
 * Rails' `create_or_find_by`: inserts `{ ...defaults, ...where }`; if a unique constraint
 * (PG 23505, MySQL 1062) says the row exists, reads and returns the existing row. Concurrent
 * callers all get the same row, and exactly one row is created.
 *
 * Inside an ambient transaction the INSERT runs in a savepoint, so the violation leaves the
 * transaction usable; outside one it is a single INSERT (plus one SELECT on a conflict).
 * A unique constraint, unique index or the primary key must cover the `where` columns, or it
 * throws `LockConfigError` (without one the database cannot refuse a duplicate).
 *
 * ```ts
 * const user = await createOrFind(users, { email }, { name: 'New user' });
 * ```
 */
export function createOrFind<T extends ObjectLiteral>(repository: Repository<T>, where: Partial<T>, defaults?: DeepPartial<T>): Promise<T> {
  return createOrFindRow(repository, where, defaults);
}
