import { currentFrame } from '../context/store';
import { heldKey } from './advisory-held';
import type { Plan } from './advisory-plan';

/** Sibling calls for one key on one connection take turns (see `afterSiblings`). */

/** Waits for the sibling bodies ahead of this call, within the call's time limit; false when the limit passed first. */
export async function siblingsDone(plan: Plan, sibling: SiblingTurn): Promise<boolean> {
  if (!sibling.ready) return true;
  if (plan.timeoutMs === undefined) {
    await sibling.ready;
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const late = Symbol('late');
  const outcome = await Promise.race([sibling.ready, new Promise<symbol>((resolve) => (timer = setTimeout(() => resolve(late), plan.timeoutMs)))]).finally(() =>
    clearTimeout(timer),
  );
  return outcome !== late;
}

export interface SiblingTurn {
  /** Settles when the sibling bodies ahead are done; undefined when none is ahead. */
  readonly ready?: Promise<unknown>;
  /** This call's body is done (or it gave up waiting): the next sibling may go. */
  readonly done: () => void;
}

/** The turn of a call no sibling can share its connection with (nothing to wait for). */
export const NO_SIBLINGS: SiblingTurn = Object.freeze({ done: () => undefined });

/**
 * Sibling calls on one connection (`Promise.all` of two calls for one key inside one transaction
 * or one session lock's pinned connection) run their bodies one after the other: each waits for
 * the bodies already running for its keys there. The database cannot order them (it sees one
 * holder, and its locks are re-entrant per connection). A nested call (its frame holds the key)
 * is re-entry and never waits for its own outer body. Registered before the first await, so two
 * siblings never both see the key as free. `memo`: the transaction's, or the connection's.
 */
export function afterSiblings(plan: Plan, memo: Map<string, unknown>): SiblingTurn {
  const frame = currentFrame();
  const ids = plan.locks.map((l) => l.id).filter((id) => !frame?.advisoryHeld?.get(heldKey(plan.inst, id))?.live.live);
  let release!: () => void;
  const mine = new Promise<void>((resolve) => (release = resolve));
  const before: Promise<void>[] = [];
  const tails: Array<[string, Promise<void>]> = [];
  for (const id of ids) {
    const slot = `ormlock.advisory.body:${id}`;
    const tail = memo.get(slot) as Promise<void> | undefined;
    if (tail) before.push(tail);
    const next = (tail ?? Promise.resolve()).then(() => mine);
    memo.set(slot, next);
    tails.push([slot, next]);
  }
  const done = () => {
    release();
    // the last in line leaves nothing to keep — once the bodies ahead (a call that gave up waiting) are done too
    for (const [slot, next] of tails) void next.then(() => memo.get(slot) === next && memo.delete(slot));
  };
  return { ready: before.length ? Promise.all(before) : undefined, done };
}
