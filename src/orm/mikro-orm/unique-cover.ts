import type { EntityMetadata } from '@mikro-orm/core';
import { noUniqueCover, whereEmpty, whereGenerated, whereNull, whereOperator, whereUnknown } from '../../faults/unique';

/**
 * Throws LockConfigError unless a unique constraint (`@Unique`, `@Property({ unique: true })`) or the
 * primary key has all its properties among `where`'s: only then can the database refuse a duplicate,
 * which is what createOrFind relies on.
 */
export function requireUniqueCover(meta: EntityMetadata<any>, where: Record<string, unknown>, caller: string): void {
  const keys = Object.keys(where);
  if (keys.length === 0) throw whereEmpty(caller, meta.className);
  const props = meta.properties as Record<string, any>;
  for (const key of keys) {
    const value = where[key];
    const prop = props[key];
    if (!prop) throw whereUnknown(caller, meta.className, key, 'property');
    if (value === undefined || value === null) {
      throw whereNull(caller, meta.className, key, value);
    }
    if (typeof value === 'object' && !(value instanceof Date) && Object.keys(value as object).some((k) => k.startsWith('$'))) {
      throw whereOperator(caller, meta.className, key);
    }
    if (prop.primary && prop.autoincrement) {
      throw whereGenerated(caller, meta.className, key, 'em.findOne');
    }
  }
  const set = new Set(keys);
  const candidates: string[][] = [
    meta.primaryKeys as string[],
    ...meta.uniques.filter((u) => u.properties !== undefined && !u.expression).map((u) => ([] as string[]).concat(u.properties as string | string[])),
    ...Object.values(props)
      .filter((p) => p.unique === true || typeof p.unique === 'string')
      .map((p) => [p.name as string]),
  ];
  if (candidates.some((c) => c.length > 0 && c.every((k) => set.has(k)))) return;
  throw noUniqueCover(
    caller,
    meta.className,
    keys,
    `@Unique({ properties: [${keys.map((k) => `'${k}'`).join(', ')}] }) on the class or @Property({ unique: true })`,
  );
}
