import type { EntityMetadata } from 'typeorm';
import { SubjectExecutor } from 'typeorm/persistence/SubjectExecutor';
import { Subject } from 'typeorm/persistence/Subject';
import { NestedSetSubjectExecutor } from 'typeorm/persistence/tree/NestedSetSubjectExecutor';
import { MaterializedPathSubjectExecutor } from 'typeorm/persistence/tree/MaterializedPathSubjectExecutor';
import { ClosureSubjectExecutor } from 'typeorm/persistence/tree/ClosureSubjectExecutor';
import { LockConfigError } from '../../../errors';
import { typeormVersion } from '../compat';
import { addExecuteStep } from './around-create';
import { lockTreeWrites } from '../tree-lock';
import { treeInternalsChanged } from '../../../faults/trees';

/**
 * `@LockedTree`'s use of TypeORM's persistence internals. Nothing is wrapped twice: the lock is
 * a step of the one `SubjectExecutor.execute` hook (around-create-patch.ts), which runs after
 * save()/remove() opened their transaction and before TypeORM broadcasts before-events and runs
 * its insert/update/remove operations — and so before `NestedSetSubjectExecutor`,
 * `MaterializedPathSubjectExecutor` and `ClosureSubjectExecutor` read or shift anything.
 *
 * What the step reads, and what `probeTreePersistence()` checks at installLocking:
 * - `SubjectExecutor`: the methods `execute`, `executeInsertOperations`,
 *   `executeUpdateOperations`, `executeRemoveOperations` (the order it relies on), and on an
 *   instance the fields `queryRunner`, `insertSubjects`, `updateSubjects`, `removeSubjects`;
 * - `Subject`: `metadata`, `entity`, `databaseEntity`, `parentSubject`;
 * - the tree executors: `insert`, `update` (and `remove` for nested sets and closure tables)
 *   on their prototypes — the operations the lock must precede;
 * - the entity's metadata: `treeType`, `treeParentRelation` (`getEntityValue`, `joinColumns`),
 *   `tablePath`, `getEntityIdMap`, and the kind's own columns (`nestedSetLeftColumn` /
 *   `nestedSetRightColumn`, `materializedPathColumn`, `closureJunctionTable`).
 */

function shapeError(internal: string, what: string): LockConfigError {
  return treeInternalsChanged(typeormVersion(), internal, what);
}

function requireMethods(internal: string, proto: unknown, names: string[]): void {
  for (const name of names) {
    if (typeof (proto as Record<string, unknown> | undefined)?.[name] !== 'function') {
      throw shapeError(`${internal}.prototype.${name}`, `${internal}.prototype.${name} is not a function`);
    }
  }
}

/**
 * Checks every TypeORM internal `@LockedTree` relies on, for the tree entities given; throws
 * LockConfigError naming the internal and the TypeORM version when one differs.
 */
export function probeTreePersistence(entities: readonly EntityMetadata[] = []): void {
  requireMethods('SubjectExecutor', SubjectExecutor?.prototype, ['execute', 'executeInsertOperations', 'executeUpdateOperations', 'executeRemoveOperations']);
  requireMethods('NestedSetSubjectExecutor', NestedSetSubjectExecutor?.prototype, ['insert', 'update', 'remove']);
  requireMethods('MaterializedPathSubjectExecutor', MaterializedPathSubjectExecutor?.prototype, ['insert', 'update']);
  requireMethods('ClosureSubjectExecutor', ClosureSubjectExecutor?.prototype, ['insert', 'update', 'remove']);

  let executor: Record<string, unknown>;
  try {
    executor = new (SubjectExecutor as any)({ marker: true }, [], {});
  } catch (error) {
    throw shapeError('SubjectExecutor', `new SubjectExecutor(queryRunner, [], options) threw: ${(error as Error).message}`);
  }
  if ((executor.queryRunner as { marker?: boolean } | undefined)?.marker !== true) {
    throw shapeError('SubjectExecutor.queryRunner', 'the constructor does not keep its query runner in `queryRunner`');
  }
  for (const list of ['insertSubjects', 'updateSubjects', 'removeSubjects']) {
    if (!Array.isArray(executor[list])) throw shapeError(`SubjectExecutor.${list}`, `an executor has no array '${list}'`);
  }

  for (const meta of entities) {
    let subject: Record<string, unknown>;
    try {
      subject = new (Subject as any)({ metadata: meta, entity: {}, canBeInserted: true });
    } catch (error) {
      throw shapeError('Subject', `new Subject({ metadata, entity }) threw: ${(error as Error).message}`);
    }
    if (subject.metadata !== meta || !('parentSubject' in subject) || subject.mustBeInserted !== true) {
      throw shapeError('Subject', 'a subject does not keep metadata / parentSubject, or has no mustBeInserted');
    }
    const m = meta as unknown as Record<string, any>;
    const rel = m.treeParentRelation;
    if (typeof rel?.getEntityValue !== 'function' || !Array.isArray(rel?.joinColumns)) {
      throw shapeError('EntityMetadata.treeParentRelation', `${meta.name} has no tree parent relation with getEntityValue/joinColumns (declare @TreeParent())`);
    }
    if (typeof m.getEntityIdMap !== 'function' || typeof m.tablePath !== 'string') {
      throw shapeError('EntityMetadata', `${meta.name}'s metadata has no getEntityIdMap() / tablePath`);
    }
    const own: Record<string, string[]> = {
      'nested-set': ['nestedSetLeftColumn', 'nestedSetRightColumn'],
      'materialized-path': ['materializedPathColumn'],
      'closure-table': ['closureJunctionTable'],
    };
    for (const field of own[m.treeType] ?? []) {
      if (!m[field]) throw shapeError(`EntityMetadata.${field}`, `${meta.name} (${m.treeType}) has no ${field}`);
    }
  }
}

let undo: (() => void) | undefined;

/** Makes the tree lock a step of the SubjectExecutor hook (idempotent). */
export function patchTreePersistence(): void {
  if (undo) return;
  undo = addExecuteStep(lockTreeWrites);
}

/** Removes the step again (the SubjectExecutor hook stays, inert for trees). */
export function unpatchTreePersistence(): void {
  undo?.();
  undo = undefined;
}

/** True while the step is applied. */
export function treePersistencePatched(): boolean {
  return undo !== undefined;
}

// The step is part of the write path's SubjectExecutor hook (applied by installLocking when some
// entity declares a write-time lock, see internals/index.ts); it is inert for entities without @LockedTree.
patchTreePersistence();
