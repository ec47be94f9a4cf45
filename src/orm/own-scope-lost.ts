import { knownState, onConnectionEvent, physical } from '../context/connection-model';
import { LockLostError } from '../errors';
import type { Installation } from '../installations';

/**
 * The ORM's own transaction scopes (`dataSource.transaction(cb)`, `manager.transaction(cb)`,
 * MikroORM's `em.transactional(cb)`) when their connection dies while ormlock holds a lock taken
 * inside them (`lock()`, a transaction-scope `withAdvisoryLock` that returned, …): the lock is
 * gone, so the scope rejects with ormlock's LockLostError — the dialect's wording, the driver's
 * error as `cause` — instead of the driver's raw error. A scope in which ormlock took no lock
 * rejects with the ORM's own error, unchanged: installing ormlock changes nothing a plain ORM
 * program observes.
 */

/** Physical connections destroyed while ormlock still held a lock on them (the model's `discarded` event). */
const diedHolding = new WeakSet<object>();
onConnectionEvent((connection, event) => {
  if (event.type === 'discarded' && event.locks.length) diedHolding.add(connection);
});

/**
 * The LockLostError a scope of the ORM's own on `connection` rejects with instead of `error`, or
 * undefined when the error stays as it is (no lock was lost with the connection, or the error is
 * not a lost connection, or it is ormlock's already).
 */
export function lostInOwnScope(inst: Installation, connection: object | undefined, error: unknown): LockLostError | undefined {
  if (!connection || error instanceof LockLostError) return undefined;
  // still held in the model (the body's statement failed; the rollback has not run yet), or held when it was destroyed
  if (!knownState(connection)?.locks.length && !diedHolding.has(physical(connection))) return undefined;
  const converted = inst.dialect.convertError(error);
  return converted instanceof LockLostError ? converted : undefined;
}

/**
 * Runs the body of an ORM's own transaction scope on `connection`: a rejection that is the loss of
 * a lock ormlock held there becomes that LockLostError before the ORM rolls back (see lostInOwnScope).
 */
export async function ownScopeBody<T>(inst: Installation, connection: object, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw lostInOwnScope(inst, connection, error) ?? error;
  }
}
