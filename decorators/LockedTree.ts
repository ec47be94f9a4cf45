import { lockedTree } from '../src/locks/tree';
import type { LockedTreeOptions } from '../src/locks/tree-options';
import { checkDecoratorOptions, rejectStandardDecorator } from './wrap-method';

/**
 * On a TypeORM `@Tree(...)` entity class: every insert (the root included), parent change and
 * removal of a node takes the tree's lock — on the write's own connection, inside its
 * transaction, before TypeORM computes any position — held until COMMIT, so concurrent writes
 * of one tree serialize. Twin: `lockedTree(EntityClass, options?)`.
 *
 * ```ts
 * @LockedTree()
 * @Tree('nested-set')
 * @Entity() class Category { … @TreeParent() parent?: Category | null; … }
 * ```
 */
export function LockedTree(options?: LockedTreeOptions): ClassDecorator {
  checkDecoratorOptions('LockedTree', options);
  return ((target: Function, context?: unknown) => {
    rejectStandardDecorator('LockedTree', target, context);
    lockedTree(target, options);
  }) as ClassDecorator;
}
