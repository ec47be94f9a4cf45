import type { EntityMetadata, MikroORM } from '@mikro-orm/core';
import type { LockDialect } from '../../dialects/dialect';
import { hookNotAFunction, targetNotAnEntity } from '../../faults/parents';
import { noVersionProperty, versionedWithoutKey } from '../../faults/version-columns';
import { isParentLockHook } from '../../locks/parent';
import { rowLockSpecFor } from '../../locks/row-lock';
import { lockMetadataOf, type EntityLockMetadata } from '../../metadata/registry';
import type { InstallationSettings } from '../../installations';
// ORM-neutral checks that live beside the TypeORM adapter (they read only the entity's name)
import { advisoryFeature } from '../typeorm/advisory-feature';
import { pessimisticFeature } from '../typeorm/pessimistic-feature';
import { parentProperty } from './mikro-orm-port';

/**
 * installLocking's validation of every decorated entity of the MikroORM instance, before anything
 * is changed: LockConfigError naming entity and property for a misdeclared decorator.
 */
export function validateEntities(orm: MikroORM, dialect: LockDialect, settings: InstallationSettings): void {
  for (const meta of Object.values(orm.getMetadata().getAll()) as EntityMetadata<any>[]) {
    if (typeof meta.class !== 'function' || meta.embeddable || meta.virtual) continue;
    const declared = lockMetadataOf(meta.class);
    if (!declared) continue;
    const named = { name: meta.className } as never;
    const ctx = { dialect, settings, dataSource: undefined } as never;
    pessimisticFeature.validate!(named, declared, ctx);
    advisoryFeature.validate!(named, declared, ctx);
    validateVersioned(meta, declared);
    validateAroundCreate(orm, meta, declared, dialect, settings);
  }
}

function validateVersioned(meta: EntityMetadata<any>, declared: EntityLockMetadata): void {
  if (!declared.versioned) return;
  const subject = `@Versioned on ${meta.className}`;
  if (!meta.versionProperty) {
    throw noVersionProperty(subject, meta.className);
  }
  if (meta.primaryKeys.length === 0) {
    throw versionedWithoutKey(subject, meta.className, 'table');
  }
}

function validateAroundCreate(
  orm: MikroORM,
  meta: EntityMetadata<any>,
  declared: EntityLockMetadata,
  dialect: LockDialect,
  settings: InstallationSettings,
): void {
  declared.aroundCreate.forEach((hook, i) => {
    if (typeof hook !== 'function') {
      throw hookNotAFunction(meta.className, i + 1, hook);
    }
    if (!isParentLockHook(hook)) return;
    const decl = hook.parentLock;
    const subject = decl.relation !== undefined ? `lockParent('${decl.relation}') on ${meta.className}` : `lockParent(fn) on ${meta.className}`;
    let parentMeta: EntityMetadata<any> | undefined;
    if (decl.relation !== undefined) {
      parentMeta = parentProperty(meta, decl.relation).targetMeta;
    } else if (decl.options.target) {
      const target = decl.options.target();
      const found = typeof target === 'function' ? orm.getMetadata().find(target.name) : undefined;
      if (!found || found.class !== target) {
        throw targetNotAnEntity(subject, meta.className, 'this MikroORM instance');
      }
      parentMeta = found;
    }
    if (parentMeta) {
      const parent = { name: parentMeta.className, table: parentMeta.tableName, target: parentMeta.class as Function, primaryKeys: [], meta: parentMeta };
      dialect.checkRowLock(rowLockSpecFor({ settings }, parent, decl.options, subject), subject);
    }
  });
}
