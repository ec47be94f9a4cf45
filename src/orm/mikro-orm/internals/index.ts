import type { MikroORM } from '@mikro-orm/core';
import { decoratedClasses, lockMetadataOf } from '../../../metadata/registry';
import { connectionPatches, transactionalPatch } from './connection';
import { PatchLifecycle, type PatchLease, type PatchSite } from '../../patching';
import { expectMethod, ownerOf, probeError, type MikroPatch } from './patch';
import { queryBuilderExecutePatch, resultAndCountPatch } from './query-builder-execute';
import { driverCountPatch, driverFindPatch, findAndCountPatch, queryBuilderPatch } from './reads';
import { entityManagerWritesPatch } from './native-writes';
import { unitOfWorkPatch } from './unit-of-work';
import { versionedPatches } from './versioned';

/**
 * Every patch of MikroORM internals, found on the live instance, probed before any is applied,
 * applied once per patched prototype (MikroORM instances of one MikroORM copy share them), and
 * undone when the last installation using it goes (the shared lifecycle of src/orm/patching.ts).
 */
const lifecycle = new PatchLifecycle();

/** The patches this MikroORM instance needs, with the prototype each patches (its identity). */
export function neededPatches(orm: MikroORM): PatchSite[] {
  const em = orm.em as any;
  const driver = em.getDriver();
  const connection = driver.getConnection('write');
  const uow = em.getUnitOfWork(false);
  const declared = decoratedClasses().map((c) => lockMetadataOf(c)!);
  const versioned = declared.some((d) => d.versioned);
  const writes = versioned || declared.some((d) => d.aroundCreate.length > 0 || d.advisory.length > 0);
  const out: PatchSite[] = [];
  const add = (owner: object | undefined, patch: MikroPatch) => out.push({ owner: owner ?? {}, patch });
  // keyed by the prototype that defines the patched method: instances of every driver share it
  for (const p of connectionPatches(connection)) add(ownerOf(connection, 'begin'), p);
  add(ownerOf(connection, 'execute'), portShapeProbe(connection, uow));
  add(ownerOf(em, 'transactional'), transactionalPatch(em));
  add(ownerOf(driver, 'find'), driverFindPatch(driver));
  add(ownerOf(driver, 'count'), driverCountPatch(driver));
  add(ownerOf(em, 'findAndCount'), findAndCountPatch(em));
  const entity = Object.values(orm.getMetadata().getAll()).find((m: any) => !m.virtual && !m.embeddable && typeof m.class === 'function') as any;
  if (entity && typeof em.createQueryBuilder === 'function') {
    const qb = em.createQueryBuilder(entity.className);
    add(ownerOf(qb, 'getKnexQuery'), queryBuilderPatch(qb));
    add(ownerOf(qb, 'execute'), queryBuilderExecutePatch(qb));
    add(ownerOf(qb, 'getResultAndCount'), resultAndCountPatch(qb));
  }
  if (writes) add(ownerOf(uow, 'commitCreateChangeSets'), unitOfWorkPatch(uow));
  if (writes) add(ownerOf(em, 'nativeUpdate'), entityManagerWritesPatch(em));
  if (versioned) for (const p of versionedPatches(uow.changeSetPersister, driver)) add(ownerOf(uow.changeSetPersister, 'persistManagedEntitiesBatch'), p); // (its nativeUpdateMany patch sits on the driver's base class, shared too)
  return out;
}

/**
 * Probes, then applies, the patches not applied yet; counts one more installation using each.
 * Throws LockConfigError naming every internal whose shape differs, having applied nothing. The
 * lease's `extend` applies what a declaration made later needs; its `release` undoes what no other
 * installation uses.
 */
export function acquirePatches(needed: readonly PatchSite[], version: string): PatchLease {
  return lifecycle.acquire(needed, (problems) => probeError(problems, version));
}

/** The names of the MikroORM internals patched right now (for tests and diagnostics). */
export function patchedMikroOrmInternals(): string[] {
  return lifecycle.patched();
}

/**
 * What the port itself uses without patching it (a probe only): running statements on a transaction
 * or a pinned connection, and adopting an entity into the transaction's EntityManager.
 */
function portShapeProbe(connection: any, uow: any): MikroPatch {
  return {
    name: 'AbstractSqlConnection.prototype.execute / transformRawResult, UnitOfWork.prototype.merge / getIdentityMap (used by the port)',
    probe: () => [
      ...expectMethod(ownerOf(connection, 'execute'), 'AbstractSqlConnection.prototype', 'execute', ['transacting']),
      ...expectMethod(ownerOf(connection, 'transformRawResult'), 'AbstractSqlConnection.prototype', 'transformRawResult'),
      ...(typeof connection.platform?.formatQuery === 'function' ? [] : ['AbstractSqlConnection.platform.formatQuery is not a function']),
      ...expectMethod(ownerOf(uow, 'merge'), 'UnitOfWork.prototype', 'merge', ['identityMap']),
      ...expectMethod(ownerOf(uow, 'getIdentityMap'), 'UnitOfWork.prototype', 'getIdentityMap'),
    ],
    apply: () => () => undefined,
  };
}
