import { InstanceChecker, type DeepPartial, type EntityMetadata, type ObjectLiteral, type Repository } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata';
import { ambientTx } from '../../context/store';
import { LockConfigError, UniqueViolationError } from '../../errors';
import { requireInstallation } from './installations';

/** Per entity: which where-column sets (sorted database names joined by ',') a unique key covers. */
const coverage = new WeakMap<EntityMetadata, Map<string, boolean>>();

/**
 * Rails' `create_or_find_by`: INSERTs `{ ...defaults, ...where }`; when a unique constraint says
 * the row exists already, reads and returns it. Inside an ambient transaction the INSERT runs in
 * a savepoint, so the violation leaves the transaction usable; outside one it is one statement.
 */
export async function createOrFindRow<T extends ObjectLiteral>(
  repository: Repository<T>,
  where: Partial<T>,
  defaults: DeepPartial<T> = {} as DeepPartial<T>,
): Promise<T> {
  if (!repository || typeof repository !== 'object' || !(repository as { metadata?: unknown }).metadata) {
    throw new LockConfigError('createOrFind(repository, where, defaults?): expected a TypeORM Repository as the first argument');
  }
  const metadata = repository.metadata;
  const caller = `createOrFind(${metadata.name})`;
  if (where === null || typeof where !== 'object' || Array.isArray(where)) {
    throw new LockConfigError(`${caller}: where must be an object of column values, e.g. { email }`, { entity: metadata.name });
  }
  if (defaults === null || typeof defaults !== 'object' || Array.isArray(defaults)) {
    throw new LockConfigError(`${caller}: defaults must be an object`, { entity: metadata.name });
  }
  requireUniqueCoverage(metadata, where, caller);

  const manager = repository.manager; // the ambient transaction's, when one is open
  const inst = requireInstallation(manager.connection);
  const tx = ambientTx(inst.dataSource);
  const row = manager.create(metadata.target, { ...defaults, ...where } as DeepPartial<T>) as T;
  const insert = () => manager.createQueryBuilder().insert().into(metadata.target).values(row).execute();

  let violation: unknown;
  if (tx) {
    const queryRunner = tx.queryRunner;
    await queryRunner.startTransaction(); // nested: SAVEPOINT
    try {
      await insert();
      await queryRunner.commitTransaction(); // RELEASE SAVEPOINT
      return row;
    } catch (error) {
      await queryRunner.rollbackTransaction(); // ROLLBACK TO SAVEPOINT: the outer transaction goes on
      if (!inst.dialect.isUniqueViolation(error)) throw inst.dialect.convertError(error) ?? error;
      violation = error;
    }
  } else {
    try {
      await insert();
      return row;
    } catch (error) {
      if (!inst.dialect.isUniqueViolation(error)) throw inst.dialect.convertError(error) ?? error;
      violation = error;
    }
  }

  const found = await manager.findOneBy(metadata.target, where as never);
  if (found) return found as T;
  if (tx) {
    // A MySQL REPEATABLE READ snapshot may predate the row's commit: a locking read is a current read.
    const current = await manager.findOne(metadata.target, { where: where as never, lock: { mode: 'pessimistic_read' } });
    if (current) return current as T;
  }
  throw new UniqueViolationError(
    `${caller}: the INSERT violated a unique constraint, but no row matches ${JSON.stringify(where)}. Either another unique ` +
      "constraint was violated (by the defaults), or the row is not visible to this transaction's snapshot " +
      '(REPEATABLE READ / SERIALIZABLE): call createOrFind outside the transaction or retry it in a fresh one.',
    { entity: metadata.name, cause: violation, where },
  );
}

/**
 * Throws LockConfigError unless a unique constraint, unique index (not partial) or the primary key
 * has all its columns among `where`'s: only then can the database refuse a duplicate.
 */
export function requireUniqueCoverage(metadata: EntityMetadata, where: ObjectLiteral, caller: string): void {
  const columns = whereColumns(metadata, where, caller);
  const key = columns.map((c) => c.databaseName).sort().join(',');
  let known = coverage.get(metadata);
  if (!known) coverage.set(metadata, (known = new Map()));
  let covered = known.get(key);
  if (covered === undefined) {
    const keys: ColumnMetadata[][] = [
      metadata.primaryColumns,
      ...metadata.uniques.map((u) => u.columns),
      ...metadata.indices.filter((i) => i.isUnique && !i.where).map((i) => i.columns),
    ];
    const set = new Set(columns);
    covered = keys.some((k) => k.length > 0 && k.every((c) => set.has(c)));
    known.set(key, covered);
  }
  if (!covered) {
    const names = columns.map((c) => c.propertyPath);
    throw new LockConfigError(
      `${caller}: no unique constraint, unique index or primary key covers (${names.join(', ')}), so the database cannot refuse a ` +
        `duplicate and concurrent callers would each insert a row. Add one on ${metadata.name}, e.g. @Unique([${names
          .map((n) => `'${n}'`)
          .join(', ')}]) on the class or @Column({ unique: true }) (partial indexes do not count).`,
      { entity: metadata.name },
    );
  }
}

function whereColumns(metadata: EntityMetadata, where: ObjectLiteral, caller: string, prefix = ''): ColumnMetadata[] {
  const out: ColumnMetadata[] = [];
  const keys = Object.keys(where);
  if (keys.length === 0 && !prefix) throw new LockConfigError(`${caller}: where is empty; give the unique column values, e.g. { email }`, { entity: metadata.name });
  for (const key of keys) {
    const path = prefix + key;
    const value = where[key];
    if (value === undefined || value === null) {
      throw new LockConfigError(`${caller}: where.${path} is ${String(value)}; unique constraints do not make NULLs unique, give a value`, { entity: metadata.name });
    }
    if (InstanceChecker.isFindOperator(value)) {
      throw new LockConfigError(`${caller}: where.${path} is an operator; createOrFind needs plain equality values`, { entity: metadata.name });
    }
    const direct = metadata.findColumnsWithPropertyPath(path);
    const generated = direct.find((c) => c.isGenerated);
    if (generated) {
      throw new LockConfigError(
        `${caller}: where.${path} is a generated column: the database assigns it on INSERT, so createOrFind cannot create ` +
          'the row with it. Look the row up with findOneBy, or use the natural unique key.',
        { entity: metadata.name },
      );
    }
    if (direct.length) {
      out.push(...direct);
      continue;
    }
    if (metadata.findEmbeddedWithPropertyPath(path) && typeof value === 'object' && !(value instanceof Date)) {
      out.push(...whereColumns(metadata, value, caller, `${path}.`));
      continue;
    }
    throw new LockConfigError(`${caller}: ${metadata.name} has no column or relation '${path}'`, { entity: metadata.name });
  }
  return out;
}
