/**
 * The faults of `@LockedTree` (src/locks/tree*.ts, the TypeORM tree lock and its probe): a tree
 * entity that cannot be locked as declared, a write that bypasses the tree, a TypeORM whose tree
 * internals have another shape. One factory per fault, one wording; the caller throws what it
 * returns. Shared faults (a wrong argument or option) are in ./options.
 */
import { LockConfigError } from '../errors';

/** `@LockedTree` on an entity that is no TypeORM `@Tree`. */
export function notATree(entity: string): LockConfigError {
  return new LockConfigError(
    `@LockedTree on ${entity}: ${entity} is not a TypeORM tree entity; declare @Tree('nested-set' | 'materialized-path' | ` +
      `'closure-table') with @TreeParent() / @TreeChildren() on it, or remove @LockedTree.`,
    { entity },
  );
}

/** `lockParent` (`what`) on a nested-set tree, which only a whole-tree lock can protect. */
export function parentLockOnNestedSet(entity: string, what: string, relation: string | undefined): LockConfigError {
  return new LockConfigError(
    `@AroundCreate(${what}) on ${entity}: ${entity} is a nested-set @Tree, whose every insert shifts nsleft/nsright ` +
      `across the whole table, so a lock on the parent row cannot protect it. Remove ${what} and declare @LockedTree() on ${entity}.`,
    { entity, relation },
  );
}

/** An INSERT of a `@LockedTree` entity that bypasses TypeORM's tree bookkeeping (insert(), upsert(), a query-builder insert). */
export function treeInsertBypassed(entity: string, call: string): LockConfigError {
  return new LockConfigError(
    `@LockedTree on ${entity}: ${call} bypasses TypeORM's tree bookkeeping (nested-set bounds, materialized path, closure rows), ` +
      'so the tree lock cannot keep the tree whole; insert nodes with save() (the node with its parent set), which takes the tree lock.',
    { entity, call },
  );
}

/** TypeORM `version`'s `internal` lacks `what` the tree lock relies on. */
export function treeInternalsChanged(version: string, internal: string, what: string): LockConfigError {
  return new LockConfigError(
    `@LockedTree: TypeORM ${version}'s ${internal} does not have the shape ormlock relies on (${what}); ` +
      `this TypeORM version is not supported by @LockedTree — pin a supported one (0.3.20 → 1.x) or remove @LockedTree.`,
    { internal, typeormVersion: version },
  );
}
