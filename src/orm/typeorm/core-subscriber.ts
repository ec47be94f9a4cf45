import type {
  EntitySubscriberInterface,
  InsertEvent,
  LoadEvent,
  TransactionCommitEvent,
  TransactionRollbackEvent,
  TransactionStartEvent,
  UpdateEvent,
} from 'typeorm';
import { savepointEnded, savepointStarted, transactionCompleted } from '../../context/commit-hooks';
import { noteOrigin, type Installation } from '../../installations';
import { noteSchemaEntity } from './typeorm-port';

/**
 * The subscriber every installation has: remembers which DataSource an entity object was loaded
 * through or saved by (so `lock(entity)` and `withLock(entity)` go to its database), and runs
 * its commit hooks (a nested TypeORM transaction is a savepoint: its rollback drops the hooks
 * registered in it). The locks a transaction held are reported released by the connection model.
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

  afterTransactionStart(event: TransactionStartEvent) {
    if (((event.queryRunner as { transactionDepth?: number }).transactionDepth ?? 1) > 1) savepointStarted(event.queryRunner);
  }

  afterTransactionCommit(event: TransactionCommitEvent) {
    if (event.queryRunner.isTransactionActive) return savepointEnded(event.queryRunner, 'commit');
    return transactionCompleted([event.queryRunner], 'commit');
  }

  afterTransactionRollback(event: TransactionRollbackEvent) {
    if (event.queryRunner.isTransactionActive) return savepointEnded(event.queryRunner, 'rollback');
    return transactionCompleted([event.queryRunner], 'rollback');
  }
}
