import type { EntitySubscriberInterface, InsertEvent, LoadEvent, TransactionCommitEvent, TransactionRollbackEvent, UpdateEvent } from 'typeorm';
import { transactionEnded } from '../../context/held';
import { noteOrigin, type Installation } from '../installations';
import { noteSchemaEntity } from './typeorm-port';

/**
 * The subscriber every installation has: remembers which DataSource an entity object was loaded
 * through or saved by (so `lock(entity)` and `withLock(entity)` go to its database), and reports
 * the locks a transaction held as released when TypeORM ends it.
 */
export class CoreSubscriber implements EntitySubscriberInterface {
  constructor(private readonly inst: Installation) {}

  afterLoad(entity: unknown, event?: LoadEvent<any>) {
    noteOrigin(entity, this.inst);
    noteSchemaEntity(entity, event?.metadata);
  }

  afterInsert(event: InsertEvent<any>) {
    noteOrigin(event.entity, this.inst);
    noteSchemaEntity(event.entity, event.metadata);
  }

  afterUpdate(event: UpdateEvent<any>) {
    noteOrigin(event.entity, this.inst);
  }

  afterTransactionCommit(event: TransactionCommitEvent) {
    if (!event.queryRunner.isTransactionActive) transactionEnded(event.queryRunner);
  }

  afterTransactionRollback(event: TransactionRollbackEvent) {
    if (!event.queryRunner.isTransactionActive) transactionEnded(event.queryRunner);
  }
}
