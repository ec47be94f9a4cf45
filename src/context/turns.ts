import { physical, takeTurn } from './connection-model';
import { childFrame, currentFrame, runInFrame } from './store';

/** What `runWithTurn` resolves when the wait for the connection outlasted its limit. */
export const TURN_TIMED_OUT: unique symbol = Symbol('ormlock.turnTimedOut');

/** True when this async context holds `connection`'s turn (it runs inside the unit of work that has it). */
export function holdsTurn(connection: object): boolean {
  return currentFrame()?.turns?.has(physical(connection)) === true;
}

/**
 * Runs `fn` as the one unit of work on `connection` (a pinned connection several calls may land
 * on): concurrent units wait for it in call order; a unit nested inside it (this context holds the
 * turn) runs at once. `waitMs`: the most to wait for the turn (TURN_TIMED_OUT past it; 0 = only if free).
 */
export async function runWithTurn<T>(connection: object, fn: () => Promise<T>, waitMs?: number): Promise<T | typeof TURN_TIMED_OUT> {
  const key = physical(connection);
  if (holdsTurn(key)) return fn();
  const { ready, giveUp } = takeTurn(key, {});
  if (waitMs !== undefined) {
    let timer: NodeJS.Timeout | undefined;
    const late = Symbol('late');
    const outcome = await Promise.race([ready, new Promise<symbol>((resolve) => (timer = setTimeout(() => resolve(late), waitMs)))]).finally(() =>
      clearTimeout(timer),
    );
    if (outcome === late) {
      giveUp(); // leaves the queue
      return TURN_TIMED_OUT;
    }
  } else await ready;
  const turns = new Set(currentFrame()?.turns ?? []).add(key);
  try {
    return await runInFrame(childFrame({ turns }), fn);
  } finally {
    giveUp();
  }
}
