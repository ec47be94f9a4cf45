import type { EntityMetadata, QueryRunner } from 'typeorm';
import { DeadlockError, LockError, LockNotAvailableError, LockTimeoutError, SerializationError } from '../../errors';
import { advisoryKeys, lockForEntityWrite, type EntityAdvisoryRequest } from '../../locks/advisory';
import { treeLockKey, treeLockTimeoutMs, type LockedTreeOptions } from '../../locks/tree-options';
import { lockMetadataOf } from '../../metadata/registry';
import type { Installation } from '../../installations';
import { DROP_NO_TRANSACTION, writeOutsideTransaction } from '../../faults/writes';

/** The fields of TypeORM's Subject that the tree lock reads (checked by probeTreePersistence). */
interface SubjectLike {
  metadata: EntityMetadata;
  entity?: Record<string, unknown>;
  databaseEntity?: Record<string, unknown>;
  parentSubject?: SubjectLike;
}

/** The `@LockedTree` options of a tree entity, or undefined when it is not locked. */
export function lockedTreeOf(meta: EntityMetadata): LockedTreeOptions | undefined {
  if (!meta.treeType || typeof meta.target !== 'function') return undefined;
  return lockMetadataOf(meta.target)?.lockedTree;
}

/**
 * True when the update carries the node's parent (the tree parent relation is set on the entity,
 * or the node is attached through a parent's children): TypeORM's tree executors then compare it
 * with the loaded row's parent and move the node if they differ. The loaded row was read before
 * the lock, so whether it really is a move is only known under the lock: every such update is
 * locked (an update that does not carry the parent is no tree write and takes no lock).
 */
function carriesParent(subject: SubjectLike): boolean {
  const relation = subject.metadata.treeParentRelation;
  if (!relation || !subject.entity) return false;
  return relation.getEntityValue(subject.entity) !== undefined || subject.parentSubject?.entity !== undefined;
}

/**
 * The `@LockedTree` step of the SubjectExecutor hook: before TypeORM computes anything, every
 * tree this save()/remove() inserts into, moves within or removes from is locked on the write's
 * own connection, in its transaction, until it ends. A tree is a table (see
 * docs/trees.md for why materialized paths and closure tables are locked per table too):
 * one transaction-scoped advisory lock per table — PostgreSQL `pg_advisory_xact_lock`, one
 * statement; MySQL/MariaDB `GET_LOCK` and a `RELEASE_LOCK` right after COMMIT/ROLLBACK.
 * Several tables are taken in one canonical order, so two writes can never deadlock on them.
 * Returns the converter of lock-related driver errors (a deadlock in TypeORM's shifting
 * UPDATEs becomes `DeadlockError`).
 */
export async function lockTreeWrites(executor: any, inst: Installation): Promise<((error: unknown) => unknown) | void> {
  const touched = new Map<string, { meta: EntityMetadata; options: LockedTreeOptions }>();
  const visit = (subjects: SubjectLike[] | undefined, applies: (s: SubjectLike) => boolean) => {
    for (const subject of subjects ?? []) {
      const options = lockedTreeOf(subject.metadata);
      if (!options || !applies(subject)) continue;
      const table = subject.metadata.tablePath;
      if (!touched.has(table)) touched.set(table, { meta: subject.metadata, options });
    }
  };
  const moves: SubjectLike[] = [];
  visit(executor.insertSubjects, () => true); // every insert, the root included
  visit(executor.updateSubjects, (s) => carriesParent(s) && (moves.push(s), true)); // parent changes
  visit(executor.removeSubjects, () => true); // removals
  if (touched.size === 0) return undefined;

  const queryRunner: QueryRunner = executor.queryRunner;
  const names = [...new Set([...touched.values()].map((t) => t.meta.name))].join(', ');
  if (!queryRunner.isTransactionActive) {
    throw writeOutsideTransaction(`@LockedTree on ${names}`, 'this write (save/remove with { transaction: false })', 'the tree lock', DROP_NO_TRANSACTION, {
      entity: names,
    });
  }
  const requests: EntityAdvisoryRequest[] = [...touched.entries()].map(([table, { options }]) => ({
    key: advisoryKeys(treeLockKey(table)),
    options: { timeoutMs: treeLockTimeoutMs(options) },
  }));
  const subject = { label: `@LockedTree on ${names}`, entity: names, kind: 'tree' as const };
  await lockForEntityWrite(inst, queryRunner, requests, subject);
  await refreshOldParents(queryRunner, moves);
  const entity = names;
  // only lock-related driver errors are converted (a unique violation stays TypeORM's error,
  // as it would be without @LockedTree)
  return (error: unknown) => {
    if (error instanceof LockError) return error;
    const converted = inst.dialect.convertError(error, { entity });
    const lockRelated = [DeadlockError, LockTimeoutError, LockNotAvailableError, SerializationError].some((c) => converted instanceof c);
    return lockRelated ? converted : error;
  };
}

/**
 * save() loads the moved row (and its old parent) before it opens its transaction, so before the
 * lock: a concurrent move of the same node may have changed the parent since. TypeORM's tree
 * executors trust that old parent: the materialized-path one rewrites the subtree's paths from
 * it (`REPLACE(path, old, new) WHERE path LIKE old%`, which then matches nothing), and the
 * nested-set one skips a move only when old and new parent are equal — a stale one makes it
 * "move" a node into the parent it already has, which its interval arithmetic does not support.
 * So under the lock the old parent of every moved node is read again (one statement per move).
 */
async function refreshOldParents(queryRunner: QueryRunner, moves: SubjectLike[]): Promise<void> {
  for (const subject of moves) {
    const meta = subject.metadata;
    if (!subject.databaseEntity) continue;
    const relation = meta.treeParentRelation!;
    const where = meta.getEntityIdMap(subject.databaseEntity);
    if (!where) continue;
    // one statement (findOne with a relation would add a DISTINCT pre-query)
    const fresh = (await queryRunner.manager
      .createQueryBuilder(meta.target as any, 'ormlock_node')
      .leftJoinAndSelect(`ormlock_node.${relation.propertyPath}`, 'ormlock_parent')
      .withDeleted()
      .whereInIds(where)
      .getOne()) as Record<string, unknown> | null;
    if (!fresh) continue;
    // replace, never merge into, the loaded parent object (TypeORM's setEntityValue merges into
    // an object already there, which would leave its old id or alter an object shared elsewhere)
    const value = relation.getEntityValue(fresh) ?? null;
    if (relation.embeddedMetadata || relation.isLazy) relation.setEntityValue(subject.databaseEntity, value);
    else subject.databaseEntity[relation.propertyName] = value;
  }
}
