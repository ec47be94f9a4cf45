/**
 * The faults of `createOrFind` (src/locks/create-or-find.ts and the adapters' unique-cover
 * checks): a `where` no unique constraint covers, a where value a unique constraint cannot match,
 * a unique violation with no row to find. One factory per fault, one wording for every ORM; the
 * caller throws what it returns. Shared faults (a wrong argument) are in ./options.
 */
import { LockConfigError, UniqueViolationError } from '../errors';

/** The repository given belongs to no installed ORM instance. */
export function notAnInstalledRepository(): LockConfigError {
  return new LockConfigError(
    'createOrFind(repository, where, defaults?): the first argument is not a repository of an installed DataSource or MikroORM instance',
  );
}

/** `where` names no column. */
export function whereEmpty(caller: string, entity: string): LockConfigError {
  return new LockConfigError(`${caller}: where is empty; give the unique column values, e.g. { email }`, { entity });
}

/** `where.path` names nothing of the entity (`what`: the ORM's word, "column or relation", "property"). */
export function whereUnknown(caller: string, entity: string, path: string, what: string): LockConfigError {
  return new LockConfigError(`${caller}: ${entity} has no ${what} '${path}'`, { entity });
}

/** `where.path` is null or undefined, which no unique constraint matches. */
export function whereNull(caller: string, entity: string, path: string, value: null | undefined): LockConfigError {
  return new LockConfigError(`${caller}: where.${path} is ${String(value)}; unique constraints do not make NULLs unique, give a value`, { entity });
}

/** `where.path` is an operator, not a value. */
export function whereOperator(caller: string, entity: string, path: string): LockConfigError {
  return new LockConfigError(`${caller}: where.${path} is an operator; createOrFind needs plain equality values`, { entity });
}

/** `where.path` is a column the database generates; `find` is the ORM's way to look the row up. */
export function whereGenerated(caller: string, entity: string, path: string, find: string): LockConfigError {
  return new LockConfigError(
    `${caller}: where.${path} is a generated column: the database assigns it on INSERT, so createOrFind cannot create the row with it. ` +
      `Look the row up with ${find}, or use the natural unique key.`,
    { entity },
  );
}

/** No unique constraint covers `where`'s columns; `example` shows how to declare one with this ORM. */
export function noUniqueCover(caller: string, entity: string, names: readonly string[], example: string): LockConfigError {
  return new LockConfigError(
    `${caller}: no unique constraint, unique index or primary key covers (${names.join(', ')}), so the database cannot refuse a ` +
      `duplicate and concurrent callers would each insert a row. Add one on ${entity}, e.g. ${example} (partial indexes do not count).`,
    { entity },
  );
}

/** The INSERT violated a unique constraint, yet no row matches `where`. */
export function uniqueButNoRow(caller: string, entity: string, where: unknown, cause: unknown): UniqueViolationError {
  return new UniqueViolationError(
    `${caller}: the INSERT violated a unique constraint, but no row matches ${JSON.stringify(where)}. Either another unique ` +
      "constraint was violated (by the defaults), or the row is not visible to this transaction's snapshot " +
      '(REPEATABLE READ / SERIALIZABLE): call createOrFind outside the transaction or retry it in a fresh one.',
    { entity, cause, where },
  );
}
