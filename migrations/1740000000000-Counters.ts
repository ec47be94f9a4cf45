import { Table, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * The optimistic-counter example's tables (examples/schema.ts): `counters` (`@Versioned`) and
 * its control `counters_plain` (TypeORM's `@VersionColumn` only). Both have a `version` column
 * from the start; for an existing table, see `addVersionColumn` (1760000000000-…).
 */
export class Counters1740000000000 implements MigrationInterface {
  name = 'Counters1740000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    for (const name of ['counters', 'counters_plain']) {
      await queryRunner.createTable(
        new Table({
          name,
          columns: [
            { name: 'id', type: 'int', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
            { name: 'name', type: 'varchar', length: '100' },
            { name: 'value', type: 'int', default: 0 },
            { name: 'version', type: 'int', default: 1 },
          ],
        }),
      );
    }
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const name of ['counters_plain', 'counters']) await queryRunner.dropTable(name, true);
  }
}
