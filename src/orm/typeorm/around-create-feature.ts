import { isParentLockHook } from '../../locks/parent';
import { rowLockSpecFor } from '../../locks/row-lock';
import type { TypeOrmFeature } from './feature';
import { parentRelation } from './typeorm-port';
import { hookNotAFunction, targetNotAnEntity } from '../../faults/parents';

/**
 * `@AroundCreate` hooks, `lockParent` among them. At installLocking: every hook must be a
 * function; every `lockParent('relation')` must name a ManyToOne / owning OneToOne relation
 * of the entity, and the row-lock policy it will use (the parent's @Pessimistic merged with
 * the lockParent options) must be one this database can honour.
 *
 * The hooks do not run from a subscriber: TypeORM starts entity listeners (`@BeforeInsert`)
 * before subscribers and starts all subscribers at once without awaiting one before the next,
 * so no subscriber can run before them. They run from a hook into TypeORM's write path
 * (see around-create-patch.ts), inert unless the DataSource is installed and the entity has
 * hooks; installLocking applies it through this feature's `install`.
 */
export const aroundCreateFeature: TypeOrmFeature = {
  name: 'around-create',
  validate(entity, declared, { dataSource, dialect, settings }) {
    declared.aroundCreate.forEach((hook, i) => {
      if (typeof hook !== 'function') {
        throw hookNotAFunction(entity.name, i + 1, hook);
      }
      if (!isParentLockHook(hook)) return;
      const decl = hook.parentLock;
      const subject = decl.relation !== undefined ? `lockParent('${decl.relation}') on ${entity.name}` : `lockParent(fn) on ${entity.name}`;
      let parentMeta;
      if (decl.relation !== undefined) {
        parentMeta = parentRelation(entity, decl.relation).inverseEntityMetadata;
      } else if (decl.options.target) {
        const target = decl.options.target();
        if (typeof target !== 'function' || !dataSource.hasMetadata(target)) {
          throw targetNotAnEntity(subject, entity.name);
        }
        parentMeta = dataSource.getMetadata(target);
      }
      if (parentMeta) {
        const parent = { name: parentMeta.name, table: parentMeta.tablePath, target: parentMeta.target as Function, primaryKeys: [], meta: parentMeta };
        dialect.checkRowLock(rowLockSpecFor({ settings }, parent, decl.options, subject), subject);
      }
    });
  },
};
