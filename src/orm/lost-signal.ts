/**
 * A driver connection's death as an AbortSignal, from the driver's own events: node-postgres'
 * Client and mysql2's Connection emit 'error' (a FATAL from the server, a reset socket) and 'end'
 * (the socket closed) on their own, also while no statement runs — `pg_terminate_backend` and
 * MariaDB `KILL` are seen within milliseconds, and nothing is sent to find out. One pair of
 * listeners per driver connection, for its whole life (pooled connections are reused), so
 * watching costs a WeakMap lookup per lock scope.
 */

interface Emitter {
  on(event: string, listener: (...args: any[]) => void): unknown;
}

const signals = new WeakMap<object, AbortSignal>();

/** After 'end', how long an 'error' with the driver's reason may still come before the signal aborts without one. */
const END_GRACE_MS = 20;

/**
 * The signal that aborts when `raw` (a driver connection) dies, its reason the driver's error;
 * undefined when `raw` emits no events (then the loss is only seen at the next statement).
 */
export function lostSignalOf(raw: unknown): AbortSignal | undefined {
  if (raw === null || typeof raw !== 'object' || typeof (raw as Emitter).on !== 'function') return undefined;
  let signal = signals.get(raw);
  if (signal) return signal;
  const controller = new AbortController();
  signal = controller.signal;
  signals.set(raw, signal);
  const emitter = raw as Emitter;
  emitter.on('error', (error: unknown) => {
    if (!controller.signal.aborted) controller.abort(error ?? new Error('the database connection failed'));
  });
  emitter.on('end', () => {
    // mysql2 emits 'end' just before the 'error' that says why: let the error be the reason
    setTimeout(() => {
      if (!controller.signal.aborted) controller.abort(new Error('the database connection ended'));
    }, END_GRACE_MS).unref?.();
  });
  return signal;
}

/**
 * True when the driver connection `raw` is known closed: its death signal aborted, or the driver's
 * own state says so (node-postgres' Client: ending or no longer queryable; mysql2's Connection: a
 * fatal error, closing, or its socket destroyed). Unknown shapes: false. Read only, to word what
 * ormlock reports about a connection it destroys.
 */
export function driverConnectionClosed(raw: unknown): boolean {
  if (raw === null || typeof raw !== 'object') return false;
  if (signals.get(raw)?.aborted) return true;
  const c = raw as { _ending?: unknown; _queryable?: unknown; _fatalError?: unknown; _closing?: unknown; stream?: { destroyed?: unknown } };
  return c._ending === true || c._queryable === false || !!c._fatalError || c._closing === true || c.stream?.destroyed === true;
}
