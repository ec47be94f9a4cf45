/**
 * The bounded wait for a pool connection, shared by the ORM ports: a call that already holds a
 * connection and needs one more (requires_new, a session lock) waits at most the installation's
 * `connectionTimeoutMs`, since waiting longer could wait forever (every connection held by a
 * caller waiting for one more). The connection that comes late is given back by `late`.
 */

/** `acquiring`'s value, or — when it has not settled within `waitMs` — throws `exhausted()` and hands `acquiring` to `late`. */
export async function withinPoolWait<T>(acquiring: Promise<T>, waitMs: number, late: (acquiring: Promise<T>) => unknown, exhausted: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = Symbol('timeout');
  const outcome = await Promise.race([acquiring, new Promise<symbol>((resolve) => (timer = setTimeout(() => resolve(timedOut), waitMs)))]).finally(() =>
    clearTimeout(timer),
  );
  if (outcome !== timedOut) return outcome as T;
  late(acquiring);
  throw exhausted();
}
