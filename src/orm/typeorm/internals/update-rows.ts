import { AsyncLocalStorage } from 'node:async_hooks';
import type { DeleteQueryBuilder, EntityMetadata, UpdateQueryBuilder } from 'typeorm';
import { lockMetadataOf } from '../../../metadata/registry';
import { installationOf } from '../../../installations';
import { dataSourceOf } from '../compat';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';

/**
 * The rows a query-builder UPDATE (repository.update(), manager.update(), increment(), a query
 * builder's update()) writes, as primary-key objects, when its WHERE names them by primary key;
 * `null` when it does not (a criteria update). Keyed by the builder's SET object, which TypeORM
 * hands to the beforeUpdate subscribers as `event.entity`.
 */
const updateRows = new WeakMap<object, Array<Record<string, unknown>> | null>();

/** The rows an UPDATE whose SET object is `valuesSet` writes (see updateRows); undefined when it was not a query-builder UPDATE. */
export function rowsOfUpdate(valuesSet: unknown): Array<Record<string, unknown>> | null | undefined {
  return valuesSet !== null && typeof valuesSet === 'object' ? updateRows.get(valuesSet) : undefined;
}

// loaded when the patch is probed, so that the MikroORM adapter (which reads rowsOfUpdate's module) needs no typeorm
// eslint-disable-next-line @typescript-eslint/no-require-imports
const proto = (): any => (require('typeorm') as typeof import('typeorm')).UpdateQueryBuilder.prototype;
const LABEL = 'UpdateQueryBuilder.prototype';

/** Notes the rows of an UPDATE of an entity with `@AdvisoryLock(entity => key)`, before TypeORM broadcasts beforeUpdate. */
export const updateRowsPatch: InternalPatch = {
  name: `${LABEL}.execute`,
  probe: () => expectMethod(proto(), LABEL, 'execute', ['valuesSet', 'callListeners']),
  apply() {
    return replaceMethod(
      proto(),
      'execute',
      (base) =>
        function (this: UpdateQueryBuilder<any>, ...args: unknown[]) {
          const map = this.expressionMap as any;
          const target = map.mainAlias?.hasMetadata ? map.mainAlias.metadata.target : undefined;
          if (
            map.callListeners === true &&
            map.valuesSet &&
            typeof map.valuesSet === 'object' &&
            typeof target === 'function' &&
            lockMetadataOf(target)?.advisory.length &&
            installationOf(dataSourceOf(this))
          ) {
            updateRows.set(map.valuesSet, primaryKeysOfWhere(map.mainAlias.metadata, map.mainAlias.name, map.wheres, map.parameters));
          }
          return base.apply(this, args);
        },
    );
  },
};

/** The rows of the query-builder DELETE running now (repository.delete(), manager.delete(), a query builder's delete()), by its entity. */
const deleteRows = new AsyncLocalStorage<{ metadata: unknown; rows: Array<Record<string, unknown>> | null }>();

/**
 * The rows the query-builder DELETE of `metadata` that is broadcasting beforeRemove deletes (see
 * primaryKeysOfWhere); `null` when its WHERE does not name them; undefined when no such DELETE runs.
 */
export function rowsOfDelete(metadata: unknown): Array<Record<string, unknown>> | null | undefined {
  const store = deleteRows.getStore();
  return store && store.metadata === metadata ? store.rows : undefined;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const deleteProto = (): any => (require('typeorm') as typeof import('typeorm')).DeleteQueryBuilder.prototype;
const DELETE_LABEL = 'DeleteQueryBuilder.prototype';

/** Notes the rows of a DELETE of an entity with `@AdvisoryLock(entity => key)` while it runs (its beforeRemove has no entity). */
export const deleteRowsPatch: InternalPatch = {
  name: `${DELETE_LABEL}.execute`,
  probe: () => expectMethod(deleteProto(), DELETE_LABEL, 'execute', ['callListeners', 'BeforeRemove']),
  apply() {
    return replaceMethod(
      deleteProto(),
      'execute',
      (base) =>
        function (this: DeleteQueryBuilder<any>, ...args: unknown[]) {
          const map = this.expressionMap as any;
          const target = map.mainAlias?.hasMetadata ? map.mainAlias.metadata.target : undefined;
          if (map.callListeners !== true || typeof target !== 'function' || !lockMetadataOf(target)?.advisory.length || !installationOf(dataSourceOf(this))) {
            return base.apply(this, args);
          }
          const rows = primaryKeysOfWhere(map.mainAlias.metadata, map.mainAlias.name, map.wheres, map.parameters);
          return deleteRows.run({ metadata: map.mainAlias.metadata, rows }, () => base.apply(this, args));
        },
    );
  },
};

/** The upsert (an INSERT … ON CONFLICT UPDATE) running now: its entity and the columns it matches an existing row on. */
const upserts = new AsyncLocalStorage<{ metadata: unknown; conflict: readonly string[] | undefined }>();

/** True while an upsert of `metadata`'s entity broadcasts its beforeInsert events. */
export function isUpsertOf(metadata: unknown): boolean {
  return metadata !== undefined && upserts.getStore()?.metadata === metadata;
}

/** The columns the running upsert of `metadata` matches an existing row on (its conflict target: `upsert(values, ['slug'])`), when it names them. */
export function conflictOfUpsert(metadata: unknown): readonly string[] | undefined {
  const store = upserts.getStore();
  return store && store.metadata === metadata ? store.conflict : undefined;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const insertProto = (): any => (require('typeorm') as typeof import('typeorm')).InsertQueryBuilder.prototype;
const INSERT_LABEL = 'InsertQueryBuilder.prototype';

/** Marks an upsert of an entity with `@AdvisoryLock(entity => key)` while it runs: its key may need the row it updates. */
export const upsertRowsPatch: InternalPatch = {
  name: `${INSERT_LABEL}.execute (upserts)`,
  probe: () => [
    ...expectMethod(insertProto(), INSERT_LABEL, 'execute', ['callListeners', 'BeforeInsert']),
    ...expectMethod(insertProto(), INSERT_LABEL, 'orUpdate', ['onUpdate']),
  ],
  apply() {
    return replaceMethod(
      insertProto(),
      'execute',
      (base) =>
        function (this: any, ...args: unknown[]) {
          const map = this.expressionMap;
          const target = map.mainAlias?.hasMetadata ? map.mainAlias.metadata.target : undefined;
          if (
            !map.onUpdate ||
            map.callListeners !== true ||
            typeof target !== 'function' ||
            !lockMetadataOf(target)?.advisory.length ||
            !installationOf(dataSourceOf(this))
          ) {
            return base.apply(this, args);
          }
          const conflictTarget: unknown = map.onUpdate.conflict;
          const conflict = Array.isArray(conflictTarget) ? conflictTarget : typeof conflictTarget === 'string' && conflictTarget ? [conflictTarget] : undefined;
          return upserts.run({ metadata: map.mainAlias.metadata, conflict }, () => base.apply(this, args));
        },
    );
  },
};

/**
 * The primary keys a WHERE names: every top-level condition is AND-ed, and the primary-key
 * columns are each constrained by `=` (or a single-column key by `IN (…)`) to parameters.
 * Other AND-ed conditions only narrow the rows. null when the rows cannot be known this way.
 * `columns` (default: the primary key) names other columns to find the same way, all of them
 * required (@Versioned: the primary key and the version column, by `=`: one row).
 */
export function primaryKeysOfWhere(
  meta: EntityMetadata,
  alias: string,
  wheres: Array<{ type: string; condition: unknown }>,
  parameters: Record<string, unknown>,
  columns: EntityMetadata['primaryColumns'] = meta.primaryColumns,
): Array<Record<string, unknown>> | null {
  if (!Array.isArray(wheres) || wheres.length === 0 || wheres.some((w) => w.type === 'or')) return null;
  const primaries = columns;
  const found = new Map<string, unknown[]>();
  const column = (path: string) => {
    const bare = path.replace(/["`[\]]/g, '');
    const name = bare.startsWith(`${alias}.`) ? bare.slice(alias.length + 1) : bare.includes('.') ? undefined : bare;
    return name === undefined ? undefined : primaries.find((c) => c.propertyPath === name || c.databaseName === name);
  };
  const param = (p: unknown) => (typeof p === 'string' && p.startsWith(':') && p.slice(1) in parameters ? { value: parameters[p.slice(1)] } : undefined);
  const note = (path: string, values: unknown[]) => {
    const col = column(path);
    if (col && !found.has(col.propertyPath)) found.set(col.propertyPath, values);
  };
  const visit = (condition: unknown): boolean => {
    if (typeof condition === 'string') {
      const m = /^\s*\(?\s*((?:[\w"`]+\.)?[\w"`]+)\s*=\s*:(\w+)\s*\)?\s*$/.exec(condition);
      if (m && m[2] in parameters) note(m[1], [parameters[m[2]]]);
      return true;
    }
    if (Array.isArray(condition)) {
      if (condition.some((c) => c?.type === 'or')) return false;
      return condition.every((c) => visit(c?.condition));
    }
    const op = condition as { operator?: string; parameters?: unknown[] } | undefined;
    if (op && (op.operator === 'equal' || op.operator === 'in') && Array.isArray(op.parameters) && typeof op.parameters[0] === 'string') {
      const values = op.parameters.slice(1).map(param);
      if (values.every(Boolean) && values.length && (op.operator === 'in' ? primaries.length === 1 : values.length === 1)) {
        note(
          op.parameters[0],
          values.map((v) => v!.value),
        );
      }
    }
    return true;
  };
  if (!wheres.every((w) => visit(w.condition))) return null;
  if (primaries.some((c) => !found.has(c.propertyPath))) return null;
  if (primaries.length === 1) {
    const [col] = primaries;
    return found.get(col.propertyPath)!.map((v) => ({ [col.propertyPath]: v }));
  }
  return [Object.fromEntries(primaries.map((c) => [c.propertyPath, found.get(c.propertyPath)![0]]))];
}
