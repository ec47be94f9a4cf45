import type { PortConnection as QueryRunner } from '../orm/port';
import { dueStandIns, forgetLock, onTransactionEnd, type HeldLock } from '../context/connection-model';
import { heldLockLost } from '../faults/advisory';

/**
 * Databases without transaction-scoped advisory locks (MySQL/MariaDB) take a session lock that
 * stands in for one; it is released on the same connection right after the transaction ends, by
 * the connection model's end handler registered here (semaphore slots rely on it too).
 */

/**
 * After a transaction on `qr` ended (the connection model's end handler): releases, on the same
 * connection, the session locks that stood in for transaction locks. A lock that was no longer
 * held is a LockLostError.
 */
async function releaseStandIns(qr: object, ended: readonly HeldLock[]): Promise<void> {
  const conn = qr as QueryRunner;
  const standIns = ended.filter((l) => l.untilTransactionEnd && (l.kind === 'advisory' || l.kind === 'tree'));
  if (!standIns.length) return;
  const lost: HeldLock[] = [];
  let cause: unknown;
  for (const held of [...standIns].reverse()) {
    try {
      if (conn.isReleased) lost.push(held);
      else if (await held.inst.dialect.advisory.unlockSession(conn, held.id, held.shared)) {
        held.inst.emit({ type: 'released', kind: held.kind, target: held.display, heldMs: Date.now() - held.at });
      } else lost.push(held);
    } catch (error) {
      lost.push(held);
      cause ??= error;
    } finally {
      forgetLock(conn, held);
    }
  }
  if (lost.length) {
    const now = Date.now();
    for (const l of lost) l.inst.emit({ type: 'lost', kind: l.kind, target: l.display, heldMs: now - l.at });
    throw heldLockLost(
      lost[0].kind === 'tree' ? 'tree lock' : 'advisory lock',
      lost.map((l) => l.display),
      {
        key: lost.length === 1 ? lost[0].display : lost.map((l) => l.display),
        cause,
      },
    );
  }
}
onTransactionEnd(releaseStandIns);

/**
 * Kept for the adapters that call it after a transaction ended on `qr`: releases the stand-ins
 * still due (the connection model's end handlers normally did so already).
 */
export function afterAdvisoryTransactionEnd(qr: QueryRunner): Promise<void> | undefined {
  if (qr.isTransactionActive) return undefined; // a savepoint ended, not the transaction
  const due = dueStandIns(qr);
  return due.length ? releaseStandIns(qr, due) : undefined;
}
