import { Table, TableForeignKey, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * The nested-set tree example's tables (examples/schema.ts): `categories` (`@LockedTree()`
 * on TypeORM's `@Tree('nested-set')`) and its control `categories_unlocked`. TypeORM keeps the
 * tree in `nsleft` / `nsright`; `parent_id` is the `@TreeParent` join column.
 */
export class TreeCategories1770000000000 implements MigrationInterface {
  name = 'TreeCategories1770000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    for (const name of ['categories', 'categories_unlocked']) {
      await queryRunner.createTable(
        new Table({
          name,
          columns: [
            { name: 'id', type: 'int', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
            { name: 'name', type: 'varchar', length: '100' },
            { name: 'nsleft', type: 'int', default: 1 },
            { name: 'nsright', type: 'int', default: 2 },
            { name: 'parent_id', type: 'int', isNullable: true },
          ],
        }),
      );
      await queryRunner.createForeignKey(
        name,
        new TableForeignKey({
          name: `FK_${name}_parent`,
          columnNames: ['parent_id'],
          referencedTableName: name,
          referencedColumnNames: ['id'],
          onDelete: 'NO ACTION',
          onUpdate: 'NO ACTION',
        }),
      );
    }
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const name of ['categories_unlocked', 'categories']) await queryRunner.dropTable(name, true);
  }
}
