import type { EntityMetadata, QueryRunner } from 'typeorm';
import { LockError, TransactionRequiredError } from '../../errors';
import { advisoryKeys, lockForEntityWrite, type EntityAdvisoryRequest } from '../../locks/advisory';
import { treeLockKey, treeLockTimeoutMs, type LockedTreeOptions } from '../../locks/tree-options';
import { lockMetadataOf } from '../../metadata/registry';
import type { Installation } from './installations';

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
 * True when TypeORM's tree executor will move the node: mirrors their own test (the new parent
 * from the entity or, attached through a parent's children, the parent subject; compared by
 * id with the loaded row's parent). A move to the root (`parent = null`) is a change.
 */
function parentChanges(subject: SubjectLike): boolean {
  const meta = subject.metadata;
  const relation = meta.treeParentRelation;
  if (!relation || !subject.entity) return false;
  let next = relation.getEntityValue(subject.entity) as unknown;
  if (next === undefined && subject.parentSubject?.entity) next = subject.parentSubject.entity;
  const previous = subject.databaseEntity ? (relation.getEntityValue(subject.databaseEntity) as unknown) : undefined;
  if (next === undefined && (meta.treeType !== 'materialized-path' || previous === undefined)) return false;
  const id = (v: unknown) => (v && typeof v === 'object' ? JSON.stringify(meta.getEntityIdMap(v as object) ?? null) : JSON.stringify(v ?? null));
  return id(next) !== id(previous);
}

/**
 * The `@LockedTree` step of the SubjectExecutor hook: before TypeORM computes anything, every
 * tree this save()/remove() inserts into, moves within or removes from is locked on the write's
 * own connection, in its transaction, until it ends. A tree is a table (see DESIGN.md "Trees"
 * and docs/trees.md for why materialized paths and closure tables are locked per table too):
 * one transaction-scoped advisory lock per table — PostgreSQL `pg_advisory_xact_lock`, one
 * statement; MySQL/MariaDB `GET_LOCK` and a `RELEASE_LOCK` right after COMMIT/ROLLBACK.
 * Several tables are taken in one canonical order, so two writes can never deadlock on them.
 * Returns the converter of lock-related driver errors (a deadlock in TypeORM's shifting
 * UPDATEs becomes `DeadlockError`).
 */
export async function lockTreeWrites(executor: any, inst: Installation): Promise<((error: unknown) => unknown) | void> {
  const touched = new Map<string, { meta: EntityMetadata; options: LockedTreeOptions; writes: Set<string> }>();
  const visit = (subjects: SubjectLike[] | undefined, write: string, applies: (s: SubjectLike) => boolean) => {
    for (const subject of subjects ?? []) {
      const options = lockedTreeOf(subject.metadata);
      if (!options || !applies(subject)) continue;
      const table = subject.metadata.tablePath;
      let entry = touched.get(table);
      if (!entry) touched.set(table, (entry = { meta: subject.metadata, options, writes: new Set() }));
      entry.writes.add(write);
    }
  };
  visit(executor.insertSubjects, 'insert', () => true);
  visit(executor.updateSubjects, 'parent change', parentChanges);
  visit(executor.removeSubjects, 'removal', () => true);
  if (touched.size === 0) return undefined;

  const queryRunner: QueryRunner = executor.queryRunner;
  const names = [...new Set([...touched.values()].map((t) => t.meta.name))].join(', ');
  if (!queryRunner.isTransactionActive) {
    throw new TransactionRequiredError(
      `@LockedTree on ${names}: this write runs outside a transaction (save/remove with { transaction: false }), so the tree lock ` +
        `could not be held until it commits; drop { transaction: false } or wrap the work in transaction(…).`,
      { entity: names },
    );
  }
  const requests: EntityAdvisoryRequest[] = [...touched.entries()].map(([table, { options }]) => ({
    key: advisoryKeys(treeLockKey(table)),
    options: { timeoutMs: treeLockTimeoutMs(options) },
  }));
  const subject = { label: `@LockedTree on ${names}`, entity: names };
  await lockForEntityWrite(inst, queryRunner, requests, subject);
  const entity = names;
  return (error: unknown) => {
    if (error instanceof LockError) return error;
    return inst.dialect.convertError(error, { entity }) ?? error;
  };
}
