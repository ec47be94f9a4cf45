import type { MigrationInterface, QueryRunner } from 'typeorm';
import { addVersionColumn, dropVersionColumn } from './add-version-column';

/**
 * Example: a live `legacy_accounts` table adopts `@Versioned`. Every existing row gets version 1
 * (the column keeps DEFAULT 1 for writers that do not know it), then the entity declares
 *
 * ```ts
 * @Versioned()
 * @Entity('legacy_accounts')
 * class LegacyAccount { …; @VersionColumn({ default: 1 }) version!: number; }
 * ```
 */
export class AddVersionToLegacyAccounts1760000000000 implements MigrationInterface {
  name = 'AddVersionToLegacyAccounts1760000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await addVersionColumn(queryRunner, 'legacy_accounts', 'version', { default: 1 });
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await dropVersionColumn(queryRunner, 'legacy_accounts', 'version');
  }
}
