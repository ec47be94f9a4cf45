import type { PortConnection as QueryRunner } from '../orm/port';
import { currentFrame, type Frame, type Scope } from '../context/store';
import { heldHere, physical, type HeldLock } from '../context/connection-model';
import type { Installation } from '../installations';
import { describeKey } from './advisory-key';
import { subjectDetails, type AdvisoryScope } from './advisory-options';
import { sharedNotUpgradable } from '../faults/advisory';
import type { LockItem, Plan } from './advisory-plan';

/**
 * What an async context (its frames) and each connection (the connection model) hold of a
 * plan's advisory locks: a held lock is not taken again, a held shared lock is not upgraded,
 * and a body's frame records what it holds for the calls nested in it.
 */

export function heldKey(inst: Installation, id: string): string {
  return `${inst.id}|${id}`;
}

/** The advisory (or tree) lock `id` as the connection model has it on `qr`. */
export function heldOn(qr: object, id: string): HeldLock | undefined {
  return heldHere(qr, 'advisory', id) ?? heldHere(qr, 'tree', id);
}

/**
 * Whether this context holds `item` already: a lock scope of this async context that still runs
 * and whose connection still holds it (per the connection model), or the connection `qr` itself.
 */
export function heldBy(plan: Plan, item: LockItem, qr: QueryRunner | undefined): { shared: boolean } | undefined {
  const frameHeld = currentFrame()?.advisoryHeld?.get(heldKey(plan.inst, item.id));
  if (frameHeld && frameHeld.live.live && (!frameHeld.connection || heldOn(frameHeld.connection, item.id))) return { shared: frameHeld.shared };
  const onRunner = qr ? heldOn(qr, item.id) : undefined;
  return onRunner ? { shared: onRunner.shared } : undefined;
}

/** The locks of the plan this context does not hold yet (a held shared lock cannot be upgraded). */
export function toAcquire(plan: Plan, qr: QueryRunner | undefined): LockItem[] {
  return plan.locks.filter((item) => {
    const held = heldBy(plan, item, qr);
    if (!held) return true;
    if (held.shared && !plan.shared) {
      throw sharedNotUpgradable(plan.subject.label, describeKey(item.key.key), subjectDetails(plan.subject, { key: item.key.key }));
    }
    return false;
  });
}

export function withHeld(plan: Plan, items: readonly LockItem[], scope: AdvisoryScope, live: Scope, connection: QueryRunner, pinned?: QueryRunner) {
  const frame = currentFrame();
  const advisoryHeld = new Map(frame?.advisoryHeld ?? []);
  // every lock of the plan: those taken now, and those the connection already held (the body is
  // their holder too, so its own children never queue behind it as siblings)
  for (const item of plan.locks) {
    const key = heldKey(plan.inst, item.id);
    if (!items.includes(item) && advisoryHeld.get(key)?.live.live) continue;
    const shared = items.includes(item) ? plan.shared : (heldOn(connection, item.id)?.shared ?? plan.shared);
    advisoryHeld.set(key, { scope, shared, display: item.key.display, live, connection: physical(connection) });
  }
  // the fields of the body's frame (runLockedBody's patch)
  const patch: Partial<Frame> = pinned
    ? { advisoryHeld, pinned: new Map(frame?.pinned ?? []).set(plan.inst, { connection: pinned, scope: live }) }
    : { advisoryHeld };
  return patch;
}
