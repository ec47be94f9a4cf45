import { LockConfigError } from '../errors';
import { entityRecord, type AroundCreateContext, type AroundCreateHook } from '../metadata/registry';
import { lockParentOf, type ParentRef } from '../orm/typeorm/parent-lock';
import type { RowLockOptions } from './row-lock-options';

export type { AroundCreateContext, AroundCreateHook } from '../metadata/registry';

/** Options of `lockParent`. The parent class's `@Pessimistic` policy applies under these. */
export interface ParentLockOptions extends RowLockOptions {
  /**
   * When the entity names no parent (relation and join column both empty): `true` inserts
   * without a lock, `false` throws LockConfigError. Default: the relation's nullability (a
   * nullable relation and join column — a tree's root — insert; a NOT NULL one throws); the
   * function form defaults to `false`.
   */
  optional?: boolean;
  /**
   * The parent's entity class, for the function form when it returns a plain object
   * (`{ id: 5 }`) or a bare id instead of an entity instance.
   */
  target?: () => Function;
}

/** What `lockParent(...)` returns: an `@AroundCreate` hook that also says what it locks. */
export interface ParentLockHook<E = any> extends AroundCreateHook<E> {
  /** The relation property it locks through, for the string form (checked at installLocking). */
  readonly relation?: string;
  /** The whole declaration, read by installLocking's validation. */
  readonly parentLock: ParentLockDeclaration;
}

export interface ParentLockDeclaration {
  readonly relation?: string;
  readonly resolve?: (entity: any) => ParentRef | Promise<ParentRef>;
  readonly options: ParentLockOptions;
}

/**
 * The built-in `@AroundCreate` hook (the seed's `around_create :save_with_lock`): inside the
 * INSERT's transaction and before anything else computes the new row, locks the parent row
 * with `SELECT … FOR UPDATE` on the INSERT's own connection and reloads it, so concurrent
 * creations of siblings serialize while creations under other parents run in parallel.
 *
 * ```ts
 * @AroundCreate(lockParent('site'))             // a ManyToOne / owning OneToOne relation
 * @Entity() class Page { @ManyToOne(() => Site) site!: Site; @Column() siteId!: number; … }
 *
 * @AroundCreate(lockParent((page: Page) => page.site))   // or a function returning the parent
 * ```
 * The entity may hold the parent object, a partial `{ id }`, a bare id on the relation, or only
 * the join column (`siteId`); in every case the reloaded parent ends up on the relation
 * property when it was empty. The parent class's `@Pessimistic` policy (mode, timeoutMs,
 * onLocked) applies, overridden by `options`. A parent row that does not exist throws
 * `StaleEntityError` naming the entity and relation, and nothing is inserted.
 */
export function lockParent<E = any>(
  relationOrResolve: string | ((entity: E) => ParentRef | Promise<ParentRef>),
  options: ParentLockOptions = {},
): ParentLockHook<E> {
  if (typeof relationOrResolve !== 'string' && typeof relationOrResolve !== 'function') {
    throw new LockConfigError(`lockParent(): expected a relation name or a function (entity) => parent, got ${typeof relationOrResolve}`);
  }
  if (typeof relationOrResolve === 'string' && relationOrResolve.length === 0) {
    throw new LockConfigError('lockParent(): the relation name is empty');
  }
  if (options === null || typeof options !== 'object') {
    throw new LockConfigError('lockParent(): options must be an object');
  }
  if (options.target !== undefined && typeof options.target !== 'function') {
    throw new LockConfigError('lockParent(): options.target must be a function returning the parent entity class, e.g. () => Site');
  }
  const declaration: ParentLockDeclaration =
    typeof relationOrResolve === 'string'
      ? { relation: relationOrResolve, options }
      : { resolve: relationOrResolve as ParentLockDeclaration['resolve'], options };
  const hook = ((entity: E, ctx: AroundCreateContext) => lockParentOf(entity as object, declaration, ctx)) as ParentLockHook<E>;
  Object.defineProperty(hook, 'name', { value: `lockParent(${declaration.relation ?? 'fn'})` });
  Object.defineProperty(hook, 'relation', { value: declaration.relation, enumerable: true });
  Object.defineProperty(hook, 'parentLock', { value: declaration, enumerable: true });
  return hook;
}

/** True for a hook made by `lockParent`. */
export function isParentLockHook(hook: unknown): hook is ParentLockHook {
  return typeof hook === 'function' && (hook as Partial<ParentLockHook>).parentLock !== undefined;
}

/**
 * The plain-function twin of `@AroundCreate(...hooks)`: appends hooks to `entityClass`
 * (they run in the order given, after hooks already registered).
 */
export function addAroundCreate(entityClass: Function, ...hooks: AroundCreateHook[]): void {
  checkHooks(entityClass, hooks);
  entityRecord(entityClass).aroundCreate.push(...hooks);
}

/** @internal The decorator's registration: class decorators apply bottom-up, so it prepends. */
export function prependAroundCreate(entityClass: Function, hooks: AroundCreateHook[]): void {
  checkHooks(entityClass, hooks);
  entityRecord(entityClass).aroundCreate.unshift(...hooks);
}

function checkHooks(entityClass: Function, hooks: AroundCreateHook[]): void {
  if (typeof entityClass !== 'function') {
    throw new LockConfigError('@AroundCreate: only entity classes can be decorated');
  }
  if (hooks.length === 0) {
    throw new LockConfigError(`@AroundCreate on ${entityClass.name}: give at least one hook, e.g. @AroundCreate(lockParent('site'))`, {
      entity: entityClass.name,
    });
  }
  hooks.forEach((hook, i) => {
    if (typeof hook !== 'function') {
      throw new LockConfigError(
        `@AroundCreate on ${entityClass.name}: hook ${i + 1} is ${hook === null ? 'null' : typeof hook}, expected a function (entity, { manager, queryRunner }) => …`,
        { entity: entityClass.name },
      );
    }
  });
}
