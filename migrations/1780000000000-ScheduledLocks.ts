import type { MigrationInterface, QueryRunner } from 'typeorm';
import { createScheduledLockTable, dropScheduledLockTable } from '../src';

/**
 * The lock table of scheduled jobs (`withScheduledLock` / `@ScheduledLock` with database
 * storage): `ormlock_scheduled_locks`, one row per job name.
 */
export class ScheduledLocks1780000000000 implements MigrationInterface {
  name = 'ScheduledLocks1780000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await createScheduledLockTable(queryRunner);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await dropScheduledLockTable(queryRunner);
  }
}
