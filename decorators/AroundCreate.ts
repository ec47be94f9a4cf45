import { prependAroundCreate } from '../src/locks/parent';
import type { AroundCreateHook } from '../src/metadata/registry';
import { rejectStandardDecorator } from './wrap-method';

/**
 * On an entity class: runs `hook(entity, { manager, queryRunner })` for every new row of it,
 * inside the INSERT's transaction (save() opens one when there is none), before the INSERT and
 * before everything else that computes the row — `@BeforeInsert` listeners, subscribers (also
 * ones registered earlier) and TypeORM's own insert bookkeeping. What a hook locks is held
 * until that transaction commits. Twin: `addAroundCreate(EntityClass, hook)`.
 *
 * ```ts
 * @AroundCreate(lockParent('site'))      // the seed's around_create :save_with_lock
 * @Entity() class Page { … }
 * ```
 * Several `@AroundCreate` on one class run top to bottom (a decorator's hooks in the order
 * given); an ancestor class's hooks run before its subclass's.
 */
export function AroundCreate(...hooks: AroundCreateHook[]): ClassDecorator {
  return ((target: Function, context?: unknown) => {
    rejectStandardDecorator('AroundCreate', target, context);
    // class decorators are applied bottom-up: prepending makes the top one run first
    prependAroundCreate(target, hooks);
  }) as ClassDecorator;
}
