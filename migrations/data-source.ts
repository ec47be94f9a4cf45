/**
 * The TypeORM CLI's entry for the examples' schema. Reads PG_URL, or MYSQL_URL (a mysql:// or
 * mariadb:// URL); set ORMLOCK_DB=postgres|mysql when both are set.
 *
 * ```sh
 * PG_URL=postgres://postgres@127.0.0.1:5432/app npx typeorm-ts-node-commonjs migration:run -d migrations/data-source.ts
 * MYSQL_URL=mysql://root@127.0.0.1:3306/app   npx typeorm-ts-node-commonjs migration:revert -d migrations/data-source.ts
 * ```
 */
import { DataSource } from 'typeorm';
import { exampleDataSourceOptions, urlFromEnv } from '../examples/db';

const url = urlFromEnv();
if (!url) {
  throw new Error('migrations/data-source.ts: set PG_URL (postgres://…) or MYSQL_URL (mysql://… or mariadb://…)');
}

export default new DataSource(exampleDataSourceOptions(url));
