import { uncheckedVersionedWrite } from '../../../faults/versioned';
import { refusesUncheckedWrites } from '../../../locks/optimistic';
import { installationFor } from '../registry';

/**
 * Writes of a `@Versioned` entity that check no version, on MikroORM: `em.nativeUpdate()`,
 * `em.nativeDelete()`, `em.upsert()`, `em.upsertMany()` (and the same on a repository), and a query
 * builder's `update()`, `delete()`, `truncate()` and `insert().onConflict().merge()`. On an
 * installed MikroORM instance they are refused before anything is sent (LockConfigError,
 * src/faults/versioned.ts), unless the entity declares `uncheckedWrites: 'allow'` — or, for
 * `em.nativeUpdate/nativeDelete`, unless the WHERE names the primary key and the version (checked:
 * native-writes.ts). A flush's own statements go through the driver (and builders without an
 * EntityManager), never these entry points: they stay checked (versioned.ts).
 */

const BY_VERSION = 'em.nativeUpdate()/nativeDelete() with a WHERE naming the primary key and the version (e.g. { id, version }: checked)';
const INSTEAD_UPDATE = `em.findOne() and change the loaded entity, then flush (checked against the version it was loaded with), or ${BY_VERSION}`;
const INSTEAD_DELETE = `em.remove() of the loaded entity, then flush (checked against the version it was loaded with), or ${BY_VERSION}`;
const INSTEAD_UPSERT = 'em.findOne() and change the loaded entity, then flush (checked against the version it was loaded with), or em.insert() of a new row';

export type UncheckedKind = 'update' | 'delete' | 'upsert';

/** The refusal of `call` (an unchecked write of `kind`) on the entity of `meta` through `em`'s MikroORM instance, or undefined when it may run. */
export function uncheckedVersionedRefusal(meta: any, em: unknown, call: string, kind: UncheckedKind): Error | undefined {
  if (!meta || meta.versionProperty === undefined || !refusesUncheckedWrites(meta.class) || !installationFor(em)) return undefined;
  return uncheckedVersionedWrite(meta.className, call, kind === 'delete' ? INSTEAD_DELETE : kind === 'upsert' ? INSTEAD_UPSERT : INSTEAD_UPDATE);
}
