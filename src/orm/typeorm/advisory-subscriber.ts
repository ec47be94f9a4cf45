import type {
  EntityMetadata, EntitySubscriberInterface, InsertEvent, QueryRunner, RemoveEvent, SoftRemoveEvent, RecoverEvent,
  UpdateEvent,
} from 'typeorm';
import { LockConfigError } from '../../errors';
import { evaluateAdvisoryKey, lockForEntityWrite, type AdvisoryLockOptions } from '../../locks/advisory';
import { lockMetadataOf } from '../../metadata/registry';
import type { Installation } from '../installations';

/**
 * The advisory subscriber (placed first on the DataSource by installLocking):
 *
 * - beforeInsert / beforeUpdate / beforeRemove (and soft-remove / recover) of an entity whose
 *   class carries `@AdvisoryLock(entity => key)`: takes the lock on `event.queryRunner`, inside
 *   the write's transaction, before TypeORM sends the write; it is held until that transaction
 *   ends. (TypeORM starts entity listeners and all subscribers' before-hooks at once, so the
 *   lock is guaranteed before the write statement, not before other before-hooks.)
 * (The session locks standing in for transaction-scoped ones where the database has none —
 * MySQL/MariaDB — are released after the transaction by the connection model's end handler.)
 */
export class AdvisoryEntitySubscriber implements EntitySubscriberInterface {
  constructor(private readonly inst: Installation) {}

  beforeInsert(event: InsertEvent<any>) {
    return this.lock(event.metadata, event.queryRunner, event.entity, 'insert');
  }

  beforeUpdate(event: UpdateEvent<any>) {
    const entity = event.entity && event.databaseEntity ? mergeOver(event.databaseEntity, event.entity) : event.entity ?? event.databaseEntity;
    return this.lock(event.metadata, event.queryRunner, entity, 'update');
  }

  beforeRemove(event: RemoveEvent<any>) {
    return this.lock(event.metadata, event.queryRunner, event.entity ?? event.databaseEntity, 'remove');
  }

  beforeSoftRemove(event: SoftRemoveEvent<any>) {
    return this.lock(event.metadata, event.queryRunner, event.entity ?? event.databaseEntity, 'soft-remove');
  }

  beforeRecover(event: RecoverEvent<any>) {
    return this.lock(event.metadata, event.queryRunner, event.entity ?? event.databaseEntity, 'recover');
  }

  private lock(metadata: EntityMetadata | undefined, qr: QueryRunner, entity: unknown, write: string): Promise<void> | undefined {
    const target = metadata?.target;
    if (typeof target !== 'function') return undefined;
    const declarations = lockMetadataOf(target)?.advisory;
    if (!declarations?.length) return undefined;
    const inst = this.inst;
    const subject = { label: `@AdvisoryLock on ${metadata!.name}`, entity: metadata!.name };
    if (entity === undefined || entity === null) {
      return Promise.reject(
        new LockConfigError(
          `${subject.label}: this ${write} has no entity to compute the lock key from (a query-builder or repository.delete/update ` +
            `by criteria); use save()/remove() on the entity, or take the lock yourself with withAdvisoryLock()`,
          { entity: metadata!.name },
        ),
      );
    }
    try {
      const requests = declarations.map((decl) => ({
        key: evaluateAdvisoryKey(decl.key, undefined, [entity], subject),
        options: decl.options as AdvisoryLockOptions,
      }));
      return lockForEntityWrite(inst, qr, requests, subject);
    } catch (error) {
      return Promise.reject(error);
    }
  }
}

/** The row as it will be after the update: the loaded row with the changed values over it. */
function mergeOver(databaseEntity: object, entity: object): object {
  return Object.assign(Object.create(Object.getPrototypeOf(entity)), databaseEntity, entity);
}
