import { runWithAmbientConnection } from '../../../context/transaction';
import { LockConfigError } from '../../../errors';
import { evaluateAdvisoryKey, lockForEntityWrite, type AdvisoryLockOptions } from '../../../locks/advisory';
import type { AroundCreateRunContext } from '../../../locks/parent';
import { lockMetadataOf, type EntityLockMetadata } from '../../../metadata/registry';
import type { Installation } from '../../../installations';
import { connectionFor, type MikroOrmConnection } from '../connection';
import { installationFor } from '../registry';
import { expectMethod, ownerOf, replaceMethod, type MikroPatch } from './patch';
import { writeOutsideTransaction, writtenWhereNotInstalled } from '../../../faults/writes';
import { noVersionValue } from '../../../faults/version-columns';

type Write = 'insert' | 'update' | 'remove';

/**
 * The write path of a flush (`UnitOfWork.prototype.commitCreateChangeSets / commitUpdateChangeSets /
 * commitDeleteChangeSets`), for entities whose class declares `@AroundCreate` hooks, entity
 * `@AdvisoryLock`s or `@Versioned`: on the flush's own transaction, before MikroORM runs any
 * `beforeCreate`/`beforeUpdate`/`beforeDelete` hook or subscriber of that entity type, ormlock runs the
 * `@AroundCreate` hooks (`lockParent`: the parent row locked and reloaded; what a hook changes on the
 * entity goes into the INSERT) and takes the entity's advisory locks. A `@Versioned` entity updated
 * without a version value (so the UPDATE would be unconditional) is refused. Everything else is
 * MikroORM's own.
 */
export function unitOfWorkPatch(uow: object): MikroPatch {
  const label = 'UnitOfWork.prototype';
  const owner = ownerOf(uow, 'commitCreateChangeSets');
  return {
    name: `${label}.commitCreateChangeSets / commitUpdateChangeSets / commitDeleteChangeSets`,
    probe: () => [
      ...expectMethod(owner, label, 'commitCreateChangeSets', ['beforeCreate', 'executeInserts']),
      ...expectMethod(owner, label, 'commitUpdateChangeSets', ['beforeUpdate', 'executeUpdates']),
      ...expectMethod(owner, label, 'commitDeleteChangeSets', ['beforeDelete', 'executeDeletes']),
      ...(typeof (uow as any).comparator?.prepareEntity === 'function' && typeof (uow as any).comparator?.diffEntities === 'function'
        ? []
        : [`${label}.comparator.prepareEntity / diffEntities is not a function`]),
    ],
    apply() {
      const wrap = (method: string, write: Write) =>
        replaceMethod(
          owner!,
          method,
          (base) =>
            async function (this: any, changeSets: any[], ctx: unknown, ...rest: unknown[]) {
              const work = relevant(changeSets, write);
              if (!work.length) return base.call(this, changeSets, ctx, ...rest);
              const inst = installationFor(this.em);
              if (!inst) throw notInstalled(work[0].meta.className);
              if (!ctx || (typeof ctx !== 'object' && typeof ctx !== 'function')) {
                const entity = work[0].meta.className;
                throw writeOutsideTransaction(
                  entity,
                  'this flush (implicitTransactions is off)',
                  'its locks',
                  'flush inside transaction(…) or em.transactional(…)',
                  { entity },
                );
              }
              const connection = connectionFor(this.em, ctx);
              await runWithAmbientConnection(inst, connection, async () => {
                for (const cs of work) await beforeWrite(this, inst, connection, cs, write);
              });
              return base.call(this, changeSets, ctx, ...rest);
            },
        );
      const undo = [wrap('commitCreateChangeSets', 'insert'), wrap('commitUpdateChangeSets', 'update'), wrap('commitDeleteChangeSets', 'remove')];
      return () => undo.reverse().forEach((u) => u());
    },
  };
}

function declared(cs: any): EntityLockMetadata | undefined {
  const cls = cs?.meta?.class;
  return typeof cls === 'function' ? lockMetadataOf(cls) : undefined;
}

function relevant(changeSets: any[], write: Write): any[] {
  if (!Array.isArray(changeSets) || changeSets.length === 0) return [];
  const d = declared(changeSets[0]);
  if (!d) return [];
  const has = d.advisory.length > 0 || (write === 'insert' && d.aroundCreate.length > 0) || (write === 'update' && d.versioned !== undefined);
  return has ? changeSets.filter((cs) => cs.entity) : [];
}

async function beforeWrite(uow: any, inst: Installation, connection: MikroOrmConnection, cs: any, write: Write): Promise<void> {
  const d = declared(cs)!;
  const name: string = cs.meta.className;
  if (write === 'update' && d.versioned) requireVersion(cs);
  if (write === 'insert' && d.aroundCreate.length) {
    const before = uow.comparator.prepareEntity(cs.entity);
    const ctx: AroundCreateRunContext = {
      manager: uow.em,
      queryRunner: connection as any,
      installation: inst,
      descriptor: inst.entity(cs.meta.class, `@AroundCreate on ${name}`),
    };
    for (const hook of d.aroundCreate) await hook(cs.entity, ctx);
    // what the hooks changed on the entity goes into the INSERT
    Object.assign(cs.payload, uow.comparator.diffEntities(cs.name ?? name, before, uow.comparator.prepareEntity(cs.entity)));
  }
  if (d.advisory.length) {
    const subject = { label: `@AdvisoryLock on ${name}`, entity: name };
    const requests = d.advisory.map((decl) => ({
      key: evaluateAdvisoryKey(decl.key, undefined, [cs.entity], subject),
      options: decl.options as AdvisoryLockOptions,
    }));
    await lockForEntityWrite(inst, connection, requests, subject);
  }
}

function requireVersion(cs: any): void {
  const meta = cs.meta;
  const vp: string | undefined = meta.versionProperty;
  if (!vp) return; // installLocking refuses @Versioned without a version property
  const value = cs.entity[vp];
  if (value !== undefined && value !== null) return;
  const id = JSON.stringify(cs.getPrimaryKey?.(true) ?? {});
  throw noVersionValue('flush', meta.className, id, vp, 'update', 'Load it (em.findOne) and change the loaded entity', 'em.nativeUpdate()', {
    entity: meta.className,
  });
}

function notInstalled(entity: string): LockConfigError {
  return writtenWhereNotInstalled(
    entity,
    'with ormlock locks',
    'a MikroORM instance',
    '`await installLocking(orm)` (from ormlock/mikro-orm) after MikroORM.init()',
    { entity },
  );
}
