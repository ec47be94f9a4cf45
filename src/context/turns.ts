import { physical, takeTurn } from './connection-model';
import { childFrame, currentFrame, runInFrame } from './store';

/** What `runWithTurn` resolves when the wait for the connection outlasted its limit. */
export const TURN_TIMED_OUT: unique symbol = Symbol('ormlock.turnTimedOut');

/**
 * Runs `fn` as one unit of work on `connection` (a pinned connection several calls may land on):
 * concurrent units wait for it in call order. Units started inside a unit's body (its siblings'
 * children) queue among themselves behind that unit's turn, never behind the unit itself (which
 * would wait for its own body). `waitMs`: the most to wait (TURN_TIMED_OUT past it; 0 = only if free).
 */
export async function runWithTurn<T>(connection: object, fn: () => Promise<T>, waitMs?: number): Promise<T | typeof TURN_TIMED_OUT> {
  const key = physical(connection);
  const frame = currentFrame();
  const domain = frame?.turns?.get(key) ?? key; // the enclosing unit's children queue on its token
  const token = {};
  const { ready, giveUp } = takeTurn(domain, token);
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
  const turns = new Map(frame?.turns ?? []).set(key, token);
  try {
    return await runInFrame(childFrame({ turns }), fn);
  } finally {
    giveUp();
  }
}
