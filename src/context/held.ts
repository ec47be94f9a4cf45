import type { LockEvent } from '../observe/events';
import type { Installation } from '../orm/installations';
import type { PortConnection } from '../orm/port';

/**
 * Locks held until the transaction on a connection ends (row, parent and tree locks): noted when
 * taken, and reported `released` with `heldMs` when that transaction commits or rolls back —
 * whoever ended it (ormlock's transaction(), or the ORM's own).
 */
interface Held {
  readonly inst: Installation;
  readonly kind: LockEvent['kind'];
  readonly target: string;
  readonly at: number;
}

const held = new WeakMap<PortConnection, Held[]>();

/** Notes a lock that `connection`'s open transaction now holds (only when someone listens). */
export function noteHeldUntilEnd(inst: Installation, connection: PortConnection, kind: LockEvent['kind'], target: string): void {
  if (!inst.observers.length) return;
  let list = held.get(connection);
  if (!list) held.set(connection, (list = []));
  list.push({ inst, kind, target, at: Date.now() });
}

/** The transaction on `connection` ended: every lock it held is released. */
export function transactionEnded(connection: PortConnection): void {
  const list = held.get(connection);
  if (!list) return;
  held.delete(connection);
  const now = Date.now();
  for (const h of list) h.inst.emit({ type: 'released', kind: h.kind, target: h.target, heldMs: now - h.at });
}
