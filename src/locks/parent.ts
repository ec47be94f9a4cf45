import { optionsProblems } from '../arguments';
import { badOption, badOptions } from '../faults/options';
import {
  bareIdForCompositeKey,
  hookCalledDirectly,
  hookNotAFunction,
  missingParent,
  noHooks,
  noParentNamed,
  parentNotSaved,
  resolvedNoParent,
  resolvedNotAnEntity,
} from '../faults/parents';
import { declare, type AroundCreateContext, type AroundCreateHook } from '../metadata/registry';
import type { Installation } from '../installations';
import type { EntityDescriptor, PortConnection } from '../orm/port';
import { lockRowOn } from './row-lock';
import type { RowLockOptions } from './row-lock-options';

/** What the function form of `lockParent` may return: an entity, a partial `{ id }`, a bare id, or nothing. */
export type ParentRef = object | string | number | bigint | null | undefined;

/** What ormlock passes to `@AroundCreate` hooks: the documented context plus the installation and the entity's descriptor. */
export interface AroundCreateRunContext extends AroundCreateContext {
  readonly installation: Installation;
  /** The entity being inserted (also for plain value objects given to `insert()`). */
  readonly descriptor: EntityDescriptor;
}

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
    throw badOption('lockParent(relation, options?)', 'relation', 'a relation name or a function (entity) => parent', relationOrResolve);
  }
  if (typeof relationOrResolve === 'string' && relationOrResolve.length === 0) {
    throw badOption('lockParent(relation, options?)', 'relation', 'a non-empty relation name', relationOrResolve);
  }
  const problems = optionsProblems(options);
  if (problems.length) throw badOptions('lockParent(relation, options?)', problems);
  if (options.target !== undefined && typeof options.target !== 'function') {
    throw badOption('lockParent(relation, options?)', 'options.target', 'a function returning the parent entity class, e.g. () => Site', options.target);
  }
  const declaration: ParentLockDeclaration =
    typeof relationOrResolve === 'string'
      ? { relation: relationOrResolve, options }
      : { resolve: relationOrResolve as ParentLockDeclaration['resolve'], options };
  const hook = ((entity: E, ctx: AroundCreateContext) => lockParentOf(entity as object, declaration, ctx as AroundCreateRunContext)) as ParentLockHook<E>;
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
  declare(entityClass, (rec) => rec.aroundCreate.push(...hooks));
}

/** @internal The decorator's registration: class decorators apply bottom-up, so it prepends. */
export function prependAroundCreate(entityClass: Function, hooks: AroundCreateHook[]): void {
  checkHooks(entityClass, hooks);
  declare(entityClass, (rec) => rec.aroundCreate.unshift(...hooks));
}

function checkHooks(entityClass: Function, hooks: AroundCreateHook[]): void {
  if (typeof entityClass !== 'function') {
    throw badOption('@AroundCreate / addAroundCreate(entityClass, ...hooks)', 'entityClass', 'an entity class', entityClass);
  }
  if (hooks.length === 0) {
    throw noHooks(entityClass.name);
  }
  hooks.forEach((hook, i) => {
    if (typeof hook !== 'function') {
      throw hookNotAFunction(entityClass.name, i + 1, hook);
    }
  });
}

/**
 * The body of a `lockParent` hook: finds the parent row the new entity points at, locks it on
 * the INSERT's connection and reloads it into the entity.
 */
export async function lockParentOf(object: object, decl: ParentLockDeclaration, ctx: AroundCreateRunContext): Promise<object | undefined> {
  if (!ctx || !ctx.installation || !ctx.descriptor) {
    throw hookCalledDirectly();
  }
  const connection = ctx.queryRunner as PortConnection;
  return decl.relation !== undefined
    ? lockThroughRelation(ctx.installation, connection, ctx.descriptor, object, decl.relation, decl.options)
    : lockResolved(ctx.installation, connection, ctx.descriptor, object, decl);
}

async function lockThroughRelation(
  inst: Installation,
  connection: PortConnection,
  entity: EntityDescriptor,
  object: object,
  relation: string,
  options: ParentLockOptions,
): Promise<object | undefined> {
  const subject = `lockParent('${relation}') on ${entity.name}`;
  const found = inst.port.locateParent(entity, relation, object);
  if (found.kind === 'new') return undefined; // created in this same write: nobody else can see it yet
  if (found.kind === 'none') {
    if (options.optional ?? found.nullable) return undefined;
    throw noParentNamed(subject, entity.name, relation, found.hint);
  }
  const fresh = await lockRowOn(inst, connection, found.parent, found.where, options, subject, 'parent');
  if (!fresh) throw missingParent(subject, entity.name, found.parent.name, relation, found.where);
  if (found.object) inst.port.refresh(found.parent, found.object, fresh);
  else inst.port.attachParent(entity, relation, object, fresh);
  return found.object ?? fresh;
}

async function lockResolved(
  inst: Installation,
  connection: PortConnection,
  entity: EntityDescriptor,
  object: object,
  decl: ParentLockDeclaration,
): Promise<object | undefined> {
  const subject = `lockParent(fn) on ${entity.name}`;
  const ref = await decl.resolve!(object);
  if (ref === null || ref === undefined) {
    if (decl.options.optional) return undefined;
    throw resolvedNoParent(subject, entity.name, ref);
  }
  const target = decl.options.target?.() ?? (typeof ref === 'object' ? ref.constructor : undefined);
  const parent = typeof target === 'function' ? inst.port.describe(target) : undefined;
  if (!parent) {
    const what = typeof ref === 'object' ? `a ${ref.constructor?.name ?? 'plain'} object` : `a bare ${typeof ref}`;
    throw resolvedNotAnEntity(subject, entity.name, what, inst.label);
  }
  let where: Record<string, unknown>;
  if (typeof ref === 'object') where = inst.port.idOf(parent, ref);
  else if (parent.primaryKeys.length === 1) where = { [parent.primaryKeys[0]]: ref };
  else throw bareIdForCompositeKey(subject, entity.name, 'the function returned', parent.name);
  if (Object.values(where).some((v) => v === undefined || v === null)) {
    throw parentNotSaved(subject, entity.name, parent.name, 'returned', parent.primaryKeys, 'save');
  }
  const fresh = await lockRowOn(inst, connection, parent, where, decl.options, subject, 'parent');
  if (!fresh) throw missingParent(subject, entity.name, parent.name, undefined, where);
  if (typeof ref === 'object') inst.port.refresh(parent, ref, fresh);
  return typeof ref === 'object' ? ref : fresh;
}
