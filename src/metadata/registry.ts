import type { RowLockOptions } from '../locks/row-lock-options';
import type { OrmConnection, OrmManager } from '../orm/port';
import type { LockedTreeOptions } from '../locks/tree-options';

/** What `@AroundCreate` hooks receive besides the entity: the INSERT's manager and connection. */
export interface AroundCreateContext {
  manager: OrmManager;
  queryRunner: OrmConnection;
}
export type AroundCreateHook<E = any> = (entity: E, ctx: AroundCreateContext) => unknown | Promise<unknown>;

/** Options of `@Versioned()`. */
export interface VersionedOptions {
  /**
   * What a write that checks no version does on this entity (`update()`, `delete()`, `upsert()`,
   * `increment()`, query-builder updates and deletes; MikroORM `nativeUpdate/nativeDelete/upsert`):
   * `'refuse'` (the default) throws LockConfigError naming the call before any statement;
   * `'allow'` lets it write whatever version the row has (see docs/optimistic.md).
   */
  readonly uncheckedWrites?: 'refuse' | 'allow';
}

/** One `@AdvisoryLock(entity => key)` declared on an entity class. */
export interface EntityAdvisoryDeclaration {
  key: (entity: any) => unknown;
  options: Record<string, unknown>;
}

/** Everything ormlock's class decorators recorded about one entity class. */
export interface EntityLockMetadata {
  pessimistic?: RowLockOptions;
  versioned?: VersionedOptions;
  aroundCreate: AroundCreateHook[];
  advisory: EntityAdvisoryDeclaration[];
  /** `@LockedTree(options)` / `lockedTree(Entity, options)`. */
  lockedTree?: LockedTreeOptions;
}

/**
 * The one registry: class decorators write here, `installLocking` reads it to validate
 * against the DataSource's metadata and to know which subscribers have work to do.
 */
const byClass = new Map<Function, EntityLockMetadata>();

/** The record of `cls` itself, created on first use (for decorators). */
export function entityRecord(cls: Function): EntityLockMetadata {
  let rec = byClass.get(cls);
  if (!rec) {
    rec = { aroundCreate: [], advisory: [] };
    byClass.set(cls, rec);
  }
  return rec;
}

/**
 * What applies to instances of `cls`: its own record merged over its ancestors'
 * (a subclass's @Pessimistic wins; hooks of ancestors run first).
 */
export function lockMetadataOf(cls: Function | undefined): EntityLockMetadata | undefined {
  const chain: EntityLockMetadata[] = [];
  for (let c = cls; c && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
    const rec = byClass.get(c);
    if (rec) chain.unshift(rec);
  }
  if (chain.length === 0) return undefined;
  if (chain.length === 1) return chain[0];
  return chain.reduce<EntityLockMetadata>(
    (acc, rec) => ({
      pessimistic: rec.pessimistic ?? acc.pessimistic,
      versioned: rec.versioned ?? acc.versioned,
      aroundCreate: [...acc.aroundCreate, ...rec.aroundCreate],
      advisory: [...acc.advisory, ...rec.advisory],
      lockedTree: rec.lockedTree ?? acc.lockedTree,
    }),
    { aroundCreate: [], advisory: [] },
  );
}

/** Every class that carries an ormlock class decorator. */
export function decoratedClasses(): Function[] {
  return [...byClass.keys()];
}

/** Called after a declaration changed a class's record (installed adapters validate it and apply what it needs). */
export type DeclarationListener = (cls: Function) => void;
const listeners = new Set<DeclarationListener>();

/** Adds a listener of declarations (adapters: a declaration made after installLocking takes effect); returns the undo. */
export function onDeclaration(listener: DeclarationListener): () => void {
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
  };
}

/**
 * Changes `cls`'s record with `change`, then tells the listeners; when one throws (a declaration
 * an installed ORM instance refuses), the record is put back as it was and the error thrown.
 */
export function declare(cls: Function, change: (rec: EntityLockMetadata) => void): void {
  const rec = entityRecord(cls);
  const before: EntityLockMetadata = { ...rec, aroundCreate: [...rec.aroundCreate], advisory: [...rec.advisory] };
  change(rec);
  try {
    for (const listener of listeners) listener(cls);
  } catch (error) {
    for (const key of Object.keys(rec) as Array<keyof EntityLockMetadata>) if (!(key in before)) delete rec[key];
    Object.assign(rec, before);
    throw error;
  }
}
