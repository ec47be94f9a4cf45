import { lockMetadataOf, decoratedClasses } from '../../../metadata/registry';
import { aggregateReadPatches } from './aggregate-reads';
import { writePatches } from './around-create';
import { entityManagerTransactionPatch } from './entity-manager';
import { probeError, type InternalPatch } from './patch';
import { persistencePatches } from './persistence';
import { pkReadPatch } from './pk-reads';
import { versionedLoadPatch } from './versioned-snapshots';
import { queryBuilderPatches } from './query-builder';
import { queryRunnerModelPatch } from './query-runner';
import { repositoryManagerPatch } from './repository';
import { deleteRowsPatch, updateRowsPatch, upsertRowsPatch } from './update-rows';
import { upsertVersionPatch } from './upsert';
import { versionedWritesPatch } from './versioned-writes';

/**
 * Every patch of TypeORM internals, applied only when something needs it, probed before any is
 * applied, and undone when the last installation goes.
 */
const applied = new Set<InternalPatch>();
let users = 0;

/** The patches the decorated entities (of every class decorated so far) and the core need. */
export function neededPatches(): InternalPatch[] {
  const declared = decoratedClasses().map((c) => lockMetadataOf(c)!);
  const versioned = declared.some((d) => d.versioned);
  const writes = versioned || declared.some((d) => d.aroundCreate.length > 0) || declared.some((d) => d.advisory.length > 0 || d.lockedTree !== undefined);
  return [
    ...queryBuilderPatches,
    pkReadPatch,
    ...aggregateReadPatches,
    repositoryManagerPatch,
    entityManagerTransactionPatch,
    queryRunnerModelPatch,
    ...(writes ? writePatches : []),
    ...(declared.some((d) => d.advisory.length > 0) ? [updateRowsPatch, deleteRowsPatch, upsertRowsPatch] : []),
    // versionedWritesPatch after persistencePatches: its SubjectExecutor wrappers are the outer ones, so
    // the version bump persistence.ts sends from executeInsertOperations counts as the flush's own
    ...(versioned ? [...persistencePatches, versionedLoadPatch, upsertVersionPatch, versionedWritesPatch] : []),
  ];
}

/**
 * Probes, then applies, the patches (those not applied yet); counts one more installation using
 * them. Throws LockConfigError naming every internal whose shape differs, having applied nothing.
 */
export function acquirePatches(patches: readonly InternalPatch[]): void {
  applyFresh(patches);
  users++;
}

/**
 * Applies what a declaration made after installLocking needs (while installations use the
 * patches): probes the fresh ones first, throwing LockConfigError having applied nothing.
 */
export function extendPatches(patches: readonly InternalPatch[]): void {
  if (users === 0) return;
  applyFresh(patches);
}

/** Probes the patches not applied yet, then applies them; throws LockConfigError having applied none when a shape differs. */
function applyFresh(patches: readonly InternalPatch[]): void {
  const fresh = patches.filter((p) => !applied.has(p));
  const problems = fresh.flatMap((p) => p.probe().map((problem) => ({ patch: p.name, problem })));
  if (problems.length) throw probeError(problems);
  for (const p of fresh) {
    p.apply();
    applied.add(p);
  }
}

/** One installation fewer; the last one restores every patched internal. */
export function releasePatches(): void {
  users = Math.max(0, users - 1);
  if (users > 0) return;
  for (const p of [...applied].reverse()) p.restore();
  applied.clear();
}

/** The names of the internals patched right now (for tests and diagnostics). */
export function patchedInternals(): string[] {
  return [...applied].map((p) => p.name);
}
