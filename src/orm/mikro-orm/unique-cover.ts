import type { EntityMetadata } from '@mikro-orm/core';
import { LockConfigError } from '../../errors';

/**
 * Throws LockConfigError unless a unique constraint (`@Unique`, `@Property({ unique: true })`) or the
 * primary key has all its properties among `where`'s: only then can the database refuse a duplicate,
 * which is what createOrFind relies on.
 */
export function requireUniqueCover(meta: EntityMetadata<any>, where: Record<string, unknown>, caller: string): void {
  const keys = Object.keys(where);
  if (keys.length === 0) throw new LockConfigError(`${caller}: where is empty; give the unique column values, e.g. { email }`, { entity: meta.className });
  const props = meta.properties as Record<string, any>;
  for (const key of keys) {
    const value = where[key];
    const prop = props[key];
    if (!prop) throw new LockConfigError(`${caller}: ${meta.className} has no property '${key}'`, { entity: meta.className });
    if (value === undefined || value === null) {
      throw new LockConfigError(`${caller}: where.${key} is ${String(value)}; unique constraints do not make NULLs unique, give a value`, { entity: meta.className });
    }
    if (typeof value === 'object' && !(value instanceof Date) && Object.keys(value as object).some((k) => k.startsWith('$'))) {
      throw new LockConfigError(`${caller}: where.${key} is an operator; createOrFind needs plain equality values`, { entity: meta.className });
    }
    if (prop.primary && prop.autoincrement) {
      throw new LockConfigError(
        `${caller}: where.${key} is a generated primary key: the database assigns it on INSERT, so createOrFind cannot create the row with it. ` +
          'Look the row up with em.findOne, or use the natural unique key.',
        { entity: meta.className },
      );
    }
  }
  const set = new Set(keys);
  const candidates: string[][] = [
    meta.primaryKeys as string[],
    ...meta.uniques.filter((u) => u.properties !== undefined && !u.expression).map((u) => ([] as string[]).concat(u.properties as string | string[])),
    ...Object.values(props).filter((p) => p.unique === true || typeof p.unique === 'string').map((p) => [p.name as string]),
  ];
  if (candidates.some((c) => c.length > 0 && c.every((k) => set.has(k)))) return;
  throw new LockConfigError(
    `${caller}: no unique constraint or primary key covers (${keys.join(', ')}), so the database cannot refuse a duplicate and concurrent callers ` +
      `would each insert a row. Add one on ${meta.className}, e.g. @Unique({ properties: [${keys.map((k) => `'${k}'`).join(', ')}] }) on the class ` +
      'or @Property({ unique: true }).',
    { entity: meta.className },
  );
}
