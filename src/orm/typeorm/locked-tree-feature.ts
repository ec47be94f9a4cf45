import { isParentLockHook } from '../../locks/parent';
import { lockedTreeOptionProblems } from '../../locks/tree-options';
import type { TypeOrmFeature } from './feature';
import { probeTreePersistence } from './internals/tree-persistence';
import { badOptions } from '../../faults/options';
import { notATree, parentLockOnNestedSet } from '../../faults/trees';

const KINDS = ['nested-set', 'materialized-path', 'closure-table'];

/**
 * `@LockedTree` on TypeORM `@Tree` entities, and the nested-set rule of `lockParent`.
 * At installLocking:
 * - `@LockedTree` on an entity that is not a `@Tree('nested-set' | 'materialized-path' |
 *   'closure-table')` is a LockConfigError naming it; so are bad options;
 * - the TypeORM internals the lock relies on are probed (internals/tree-persistence.ts);
 * - `lockParent` on a nested-set tree entity is a LockConfigError pointing to `@LockedTree()`:
 *   a nested-set insert shifts nsleft/nsright of every row right of it, across the table, so a
 *   lock on the direct parent cannot serialize it.
 * The lock itself is a step of the SubjectExecutor hook, applied only when some entity declares
 * `@LockedTree` (see tree-lock.ts).
 */
export const lockedTreeFeature: TypeOrmFeature = {
  name: 'locked-tree',
  validate(entity, declared) {
    if (entity.treeType === 'nested-set') {
      const hook = declared.aroundCreate.find(isParentLockHook);
      if (hook) {
        const what = hook.parentLock.relation !== undefined ? `lockParent('${hook.parentLock.relation}')` : 'lockParent(fn)';
        throw parentLockOnNestedSet(entity.name, what, hook.parentLock.relation);
      }
    }
    if (!declared.lockedTree) return;
    if (!entity.treeType || !KINDS.includes(entity.treeType)) {
      throw notATree(entity.name);
    }
    const problems = lockedTreeOptionProblems(declared.lockedTree);
    if (problems.length) throw badOptions(`@LockedTree on ${entity.name}`, problems, { entity: entity.name });
    probeTreePersistence([entity]);
  },
};
