import { Table, TableForeignKey, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * The examples' schema (examples/schema.ts): the seed's nested-set page tree (`sites`, `pages`
 * and its control twin `pages_unlocked`), charge_user_for_order (`users`, `orders`), and
 * `legacy_accounts`, a table that predates ormlock and adopts `@Versioned` in the later
 * migration 1760000000000-add-version-to-legacy-accounts.
 * Written with TypeORM's portable Table API, so it runs on PostgreSQL and MySQL/MariaDB alike.
 *
 * ```sh
 * PG_URL=postgres://postgres@127.0.0.1:5432/app npx typeorm-ts-node-commonjs migration:run -d migrations/data-source.ts
 * MYSQL_URL=mysql://root@127.0.0.1:3306/app   npx typeorm-ts-node-commonjs migration:run -d migrations/data-source.ts
 * ```
 */
export class ExampleSchema1730000000000 implements MigrationInterface {
  name = 'ExampleSchema1730000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const id = { name: 'id', type: 'int', isPrimary: true, isGenerated: true, generationStrategy: 'increment' as const };

    await queryRunner.createTable(new Table({ name: 'sites', columns: [id, { name: 'name', type: 'varchar', length: '100' }] }));
    for (const table of ['pages', 'pages_unlocked']) {
      await queryRunner.createTable(
        new Table({
          name: table,
          columns: [
            id,
            { name: 'title', type: 'varchar', length: '200' },
            { name: 'site_id', type: 'int' },
            { name: 'lft', type: 'int', default: 0 },
            { name: 'rgt', type: 'int', default: 0 },
          ],
          indices: [new TableIndex({ name: `IDX_${table}_site_lft`, columnNames: ['site_id', 'lft'] })],
          foreignKeys: [
            new TableForeignKey({
              name: `FK_${table}_site`,
              columnNames: ['site_id'],
              referencedTableName: 'sites',
              referencedColumnNames: ['id'],
              onDelete: 'CASCADE',
              onUpdate: 'NO ACTION',
            }),
          ],
        }),
      );
    }

    await queryRunner.createTable(
      new Table({
        name: 'users',
        columns: [id, { name: 'name', type: 'varchar', length: '100' }, { name: 'credits', type: 'int' }],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'orders',
        columns: [id, { name: 'user_id', type: 'int' }, { name: 'price', type: 'int' }, { name: 'paid', type: 'boolean', default: false }],
        foreignKeys: [
          new TableForeignKey({
            name: 'FK_orders_user',
            columnNames: ['user_id'],
            referencedTableName: 'users',
            referencedColumnNames: ['id'],
            onDelete: 'CASCADE',
            onUpdate: 'NO ACTION',
          }),
        ],
      }),
    );

    // a "legacy" table without a version column (1760000000000-add-version-to-legacy-accounts adds it)
    await queryRunner.createTable(
      new Table({
        name: 'legacy_accounts',
        columns: [
          { name: 'id', type: 'int', isPrimary: true },
          { name: 'email', type: 'varchar', length: '100' },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    // foreign keys go with their tables; children before parents
    for (const table of ['legacy_accounts', 'orders', 'users', 'pages_unlocked', 'pages', 'sites']) await queryRunner.dropTable(table, true);
  }
}
