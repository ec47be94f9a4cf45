import type { EntitySubscriberInterface, InsertEvent, UpdateEvent } from 'typeorm';
import { noteOrigin, type Installation } from '../installations';

/**
 * The subscriber every installation has: remembers which DataSource an entity object was loaded
 * through or saved by (so `lock(entity)` and `withLock(entity)` go to its database). (The locks a
 * transaction held are reported released by the connection model, which follows every QueryRunner.)
 */
export class CoreSubscriber implements EntitySubscriberInterface {
  constructor(private readonly inst: Installation) {}

  afterLoad(entity: unknown) {
    noteOrigin(entity, this.inst);
  }

  afterInsert(event: InsertEvent<any>) {
    noteOrigin(event.entity, this.inst);
  }

  afterUpdate(event: UpdateEvent<any>) {
    noteOrigin(event.entity, this.inst);
  }
}
