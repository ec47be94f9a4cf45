import type { EntityMetadata, EntitySubscriberInterface, InsertEvent, QueryRunner, RemoveEvent, SoftRemoveEvent, RecoverEvent, UpdateEvent } from 'typeorm';
import { evaluateAdvisoryKey, lockForEntityWrite, type AdvisoryLockOptions } from '../../locks/advisory';
import { lockMetadataOf } from '../../metadata/registry';
import { childFrame, runInFrame } from '../../context/store';
import type { Installation } from '../../installations';
import { conflictOfUpsert, isUpsertOf, rowsOfDelete, rowsOfUpdate } from './internals/update-rows';
import { advisoryKeyUnknown } from '../../faults/writes';

/**
 * The advisory subscriber (added to the DataSource's subscribers by installLocking):
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
    if (isUpsertOf(event.metadata) && declarationsOf(event.metadata)) return this.lockUpsert(event.metadata, event.queryRunner, event.entity);
    return this.lock(event.metadata, event.queryRunner, event.entity, 'insert');
  }

  beforeUpdate(event: UpdateEvent<any>) {
    if (event.entity && event.databaseEntity) return this.lock(event.metadata, event.queryRunner, mergeOver(event.databaseEntity, event.entity), 'update');
    const rows = rowsOfUpdate(event.entity);
    if (rows === undefined) return this.lock(event.metadata, event.queryRunner, event.entity ?? event.databaseEntity, 'update');
    // a query-builder UPDATE (repository.update(), increment(), qb.update()): event.entity is its SET
    // object; the keys come from the rows it writes, found by the primary key its WHERE names
    return this.lockRows(event.metadata, event.queryRunner, rows, event.entity as object, 'update');
  }

  beforeRemove(event: RemoveEvent<any>) {
    const entity = event.entity ?? event.databaseEntity;
    const rows = entity === undefined ? rowsOfDelete(event.metadata) : undefined;
    // a query-builder DELETE (repository.delete(), qb.delete()) has no entity: the keys come from the
    // rows it deletes, found by the primary key its WHERE names, loaded in its transaction first
    if (rows !== undefined) return this.lockRows(event.metadata, event.queryRunner, rows, {}, 'delete');
    return this.lock(event.metadata, event.queryRunner, entity, 'remove');
  }

  beforeSoftRemove(event: SoftRemoveEvent<any>) {
    return this.lock(event.metadata, event.queryRunner, event.entity ?? event.databaseEntity, 'soft-remove');
  }

  beforeRecover(event: RecoverEvent<any>) {
    return this.lock(event.metadata, event.queryRunner, event.entity ?? event.databaseEntity, 'recover');
  }

  private lock(metadata: EntityMetadata | undefined, qr: QueryRunner, entity: unknown, write: string): Promise<void> | undefined {
    const declarations = declarationsOf(metadata);
    if (!declarations) return undefined;
    if (entity === undefined || entity === null) return Promise.reject(noRow(metadata!, write));
    try {
      return lockForEntityWrite(this.inst, qr, requestsFor(metadata!, declarations, [entity]), subjectOf(metadata!));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The lock of an upsert's row: its values over the row it updates when that row exists — found by
   * the upsert's conflict columns (`upsert(values, ['slug'])`) when the values fill them, else by the
   * primary key the values carry.
   */
  private async lockUpsert(metadata: EntityMetadata, qr: QueryRunner, values: Record<string, unknown> | undefined): Promise<void> {
    const match = values ? upsertMatch(metadata, values, conflictOfUpsert(metadata)) : undefined;
    if (!values || !match || !qr.isTransactionActive) return this.lock(metadata, qr, values, 'upsert');
    const row = await runInFrame(childFrame({ readLock: undefined }), () => qr.manager.findOne(metadata.target, { where: match as never, withDeleted: true }));
    const defined = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined && typeof v !== 'function'));
    return this.lock(metadata, qr, row ? Object.assign(row, defined) : values, 'upsert');
  }

  /** The lock of a query-builder UPDATE or DELETE: keys from each row it writes (loaded by primary key, an update's SET values over it). */
  private async lockRows(
    metadata: EntityMetadata,
    qr: QueryRunner,
    rows: Array<Record<string, unknown>> | null,
    set: object,
    write: 'update' | 'delete',
  ): Promise<void> {
    const declarations = declarationsOf(metadata);
    if (!declarations) return;
    if (rows === null) throw advisoryKeyUnknown(metadata.name, write, CRITERIA, INSTEAD);
    const subject = subjectOf(metadata);
    if (!qr.isTransactionActive) return lockForEntityWrite(this.inst, qr, [], subject); // its TransactionRequiredError
    // read without a @Pessimistic method's row lock: the advisory lock is taken before the row's, as save() does
    const loaded = await runInFrame(childFrame({ readLock: undefined }), () => qr.manager.find(metadata.target, { where: rows as never, withDeleted: true }));
    if (!loaded.length) return; // the UPDATE writes no row
    const values = Object.fromEntries(Object.entries(set).filter(([, v]) => typeof v !== 'function'));
    const entities = loaded.map((row: object) => Object.assign(row, values));
    return lockForEntityWrite(this.inst, qr, requestsFor(metadata, declarations, entities), subject);
  }
}

function declarationsOf(metadata: EntityMetadata | undefined) {
  const target = metadata?.target;
  if (typeof target !== 'function') return undefined;
  const declarations = lockMetadataOf(target)?.advisory;
  return declarations?.length ? declarations : undefined;
}

function subjectOf(metadata: EntityMetadata) {
  return { label: `@AdvisoryLock on ${metadata.name}`, entity: metadata.name };
}

function requestsFor(metadata: EntityMetadata, declarations: NonNullable<ReturnType<typeof declarationsOf>>, entities: unknown[]) {
  const subject = subjectOf(metadata);
  return entities.flatMap((entity) =>
    declarations.map((decl) => ({ key: evaluateAdvisoryKey(decl.key, undefined, [entity], subject), options: decl.options as AdvisoryLockOptions })),
  );
}

const CRITERIA = 'its WHERE does not name the rows by primary key, so which rows it writes is known only once it runs';
const INSTEAD = "save()/remove() on the entity, update or delete by primary key (repository.update(id, …), repository.delete(id), .where('id = :id'))";

/** The documented refusal of a write whose row cannot be known. */
function noRow(metadata: EntityMetadata, write: string) {
  return advisoryKeyUnknown(metadata.name, write, 'a query-builder or repository write by criteria', INSTEAD);
}

/** The row as it will be after the update: the loaded row with the changed values over it. */
function mergeOver(databaseEntity: object, entity: object): object {
  return Object.assign(Object.create(Object.getPrototypeOf(entity)), databaseEntity, entity);
}

/**
 * The WHERE of the row an upsert with `values` updates: its conflict columns' values when it names
 * columns and the values fill them all, else the primary key the values carry (undefined: none). A
 * conflict column inside a relation or an embedded entity cannot be read back here: refused.
 */
function upsertMatch(metadata: EntityMetadata, values: Record<string, unknown>, conflict: readonly string[] | undefined): Record<string, unknown> | undefined {
  const byKey = metadata.getEntityIdMap(values) ?? undefined;
  if (!conflict?.length) return byKey;
  const columns = conflict.map((name) => metadata.columns.find((c) => c.databaseName === name || c.propertyPath === name));
  if (columns.some((c) => !c || c.relationMetadata || c.embeddedMetadata)) {
    throw advisoryKeyUnknown(metadata.name, 'upsert', 'it matches the row it updates on a column of a relation or an embedded entity', INSTEAD);
  }
  const where: Record<string, unknown> = {};
  for (const column of columns) {
    const value = column!.getEntityValue(values);
    if (value === undefined || value === null) return byKey;
    where[column!.propertyName] = value;
  }
  return where;
}
