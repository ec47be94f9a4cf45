import { InsertQueryBuilder, type EntityMetadata } from 'typeorm';
import { lockMetadataOf } from '../../../metadata/registry';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';

const insert = InsertQueryBuilder.prototype as any;
const LABEL = 'InsertQueryBuilder.prototype';

/**
 * `upsert()` (and `insert().orUpdate(…)`) of a @Versioned entity: the update branch moves the
 * version (`version = version + 1`), so an object loaded before the upsert is stale afterwards.
 * TypeORM only overwrites the columns given, and never the version. The upsert itself is an
 * unconditional write (there is no loaded version to check): see the README.
 */
export const upsertVersionPatch: InternalPatch = {
  name: `${LABEL}.createInsertExpression (@Versioned upserts)`,
  probe: () => expectMethod(insert, LABEL, 'createInsertExpression', ['onUpdate', 'overwrite']),
  apply() {
    return replaceMethod(
      insert,
      'createInsertExpression',
      (base) =>
        function (this: InsertQueryBuilder<any>) {
          const sql: string = base.call(this);
          const map = this.expressionMap as any;
          const metadata: EntityMetadata | undefined = map.mainAlias?.hasMetadata ? map.mainAlias.metadata : undefined;
          const vcol = metadata?.versionColumn;
          if (!vcol || !map.onUpdate || typeof metadata!.target !== 'function' || !lockMetadataOf(metadata!.target)?.versioned) return sql;
          const overwrite: unknown = map.onUpdate.overwrite ?? map.onUpdate.columns;
          if (Array.isArray(overwrite) && overwrite.includes(vcol.databaseName)) return sql; // the caller sets it
          const column = this.escape(vcol.databaseName);
          const self = this as any;
          const table: string = self.getTableName(self.getMainTableName());
          const alias = this.escape(this.alias);
          // ON CONFLICT … DO UPDATE: the existing row is named by the table (or its alias); ON DUPLICATE KEY UPDATE: unqualified
          const existing = sql.includes(`INTO ${table} AS ${alias}`) ? alias : table;
          const at = (marker: string) => {
            const i = sql.indexOf(marker);
            return i < 0 ? -1 : i + marker.length;
          };
          const pg = at(' DO UPDATE SET ');
          if (pg >= 0) return `${sql.slice(0, pg)}${column} = ${existing}.${column} + 1, ${sql.slice(pg)}`;
          const my = at(' ON DUPLICATE KEY UPDATE ');
          if (my >= 0) return `${sql.slice(0, my)}${column} = ${column} + 1, ${sql.slice(my)}`;
          return sql;
        },
    );
  },
};
