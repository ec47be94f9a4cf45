import { lockMetadataOf, decoratedClasses } from '../../../metadata/registry';
import { aggregateReadPatches } from './aggregate-reads';
import { writePatches } from './around-create';
import { entityManagerTransactionPatch } from './entity-manager';
import { PatchLifecycle, type PatchLease, type PatchSite } from '../../patching';
import { probeError, type InternalPatch } from './patch';
import { persistencePatches } from './persistence';
import { pkReadPatch } from './pk-reads';
import { versionedFastSavePatch } from './versioned-fast-save';
import { versionedLoadPatch } from './versioned-snapshots';
import { queryBuilderPatches } from './query-builder';
import { queryRunnerModelPatch } from './query-runner';
import { repositoryManagerPatch } from './repository';
import { deleteRowsPatch, updateRowsPatch, upsertRowsPatch } from './update-rows';
import { upsertVersionPatch } from './upsert';
import { versionedWritesPatch } from './versioned-writes';

/**
 * Every patch of TypeORM internals, applied only when something needs it, probed before any is
 * applied, counted per installation using it, and undone when the last one goes (the shared
 * lifecycle of src/orm/patching.ts). The patches change the one TypeORM this adapter imports, so
 * each is its own site.
 */
const lifecycle = new PatchLifecycle();

/** The patches the decorated entities (of every class decorated so far) and the core need. */
export function neededPatches(): PatchSite[] {
  return sites(neededInternalPatches());
}

function neededInternalPatches(): InternalPatch[] {
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
    ...(versioned ? [...persistencePatches, versionedLoadPatch, versionedFastSavePatch, upsertVersionPatch, versionedWritesPatch] : []),
  ];
}

/** The patches as sites of the lifecycle. */
function sites(patches: readonly InternalPatch[]): PatchSite[] {
  return patches.map((patch) => ({ owner: patch, patch }));
}

/**
 * Probes, then applies, the patches not applied yet; counts one more installation using each.
 * Throws LockConfigError naming every internal whose shape differs, having applied nothing. The
 * lease's `extend` applies what a declaration made later needs; its `release` undoes what no
 * other installation uses.
 */
export function acquirePatches(needed: readonly PatchSite[]): PatchLease {
  return lifecycle.acquire(needed, probeError);
}

/** The names of the internals patched right now (for tests and diagnostics). */
export function patchedInternals(): string[] {
  return lifecycle.patched();
}
