import { badOption, badOptions } from '../faults/options';
import { declare } from '../metadata/registry';
import { lockedTreeOptionProblems, type LockedTreeOptions } from './tree-options';

export { treeLockKey, treeLockTimeoutMs, lockedTreeOptionProblems, type LockedTreeOptions } from './tree-options';

/**
 * The plain-function twin of `@LockedTree(options?)`: every insert (the root included), parent
 * change and removal of a node of `entityClass` — a TypeORM `@Tree('nested-set' |
 * 'materialized-path' | 'closure-table')` entity — takes the tree's lock on the write's own
 * connection, inside its transaction, before TypeORM computes any position, held until COMMIT.
 * installLocking checks that the class is a tree entity of the DataSource.
 *
 * ```ts
 * lockedTree(Category);                        // same as @LockedTree() on the class
 * lockedTree(Category, { timeoutMs: 2_000 });  // LockTimeoutError after 2 s of waiting
 * ```
 */
export function lockedTree(entityClass: Function, options: LockedTreeOptions = {}): void {
  if (typeof entityClass !== 'function') {
    throw badOption('lockedTree(EntityClass, options?)', 'the first argument', 'an entity class', entityClass);
  }
  const problems = lockedTreeOptionProblems(options);
  if (problems.length) {
    throw badOptions(`@LockedTree on ${entityClass.name}`, problems, { entity: entityClass.name });
  }
  declare(entityClass, (rec) => (rec.lockedTree = { ...options }));
}
