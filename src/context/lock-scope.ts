import { LockLostError } from '../errors';
import type { Installation } from '../installations';
import type { PortConnection } from '../orm/port';
import { died } from './connection-model';
import { LockScope } from './lock-signal';
import { currentFrame, lockScopeFrame, runInFrame, type Frame } from './store';

/**
 * A locked body and its connection: the body runs as a lock scope (`currentLockSignal()`) whose
 * signal aborts as soon as the driver reports the connection dead (the port's `lostSignal`, from
 * the driver's own events — no statement). The call then rejects at once with the scope's
 * LockLostError (the driver's error as `cause`), whether or not the body is still running, and
 * nothing of its transaction commits: the caller rolls back (or finds the connection gone). The
 * body's later ormlock and ORM calls fail with the same error (src/context/store.ts), so it never
 * carries on silently on another pool connection.
 */
export interface LockedBody {
  readonly inst: Installation;
  readonly connection: PortConnection;
  /** The error the call rejects with; `cause` is the driver's error. */
  lost(cause: unknown): LockLostError;
  /**
   * A transaction rather than a lock: when a lock scope inside it on the same connection names
   * the loss, its signal and rejection carry that scope's error (which names the lock).
   */
  readonly adopt?: boolean;
}

/** What one scope does when its connection dies: aborts with its error, given the error of the scope inside it, if any. */
type Watcher = (cause: unknown, inner: LockLostError | undefined) => LockLostError;

/** The scopes watching each connection's death, innermost (latest) last, and the connections they run on. */
const watchers = new WeakMap<AbortSignal, { scopes: Set<Watcher>; connections: Set<object> }>();

/**
 * Runs `watcher` when `dead` aborts, after every scope that started later (innermost first); returns
 * the undo. First the connection model forgets what `connection` held (the server freed it).
 */
function watch(dead: AbortSignal, connection: object, watcher: Watcher): () => void {
  let entry = watchers.get(dead);
  if (!entry) {
    const watched = (entry = { scopes: new Set<Watcher>(), connections: new Set<object>() });
    watchers.set(dead, watched);
    dead.addEventListener(
      'abort',
      () => {
        for (const c of watched.connections) died(c, 'the connection died');
        let inner: LockLostError | undefined;
        for (const w of [...watched.scopes].reverse()) inner = w(dead.reason, inner);
      },
      { once: true },
    );
  }
  const { scopes, connections } = entry;
  scopes.add(watcher);
  connections.add(connection);
  return () => {
    scopes.delete(watcher);
    if (!scopes.size) connections.clear();
  };
}

/**
 * Runs `fn` as the lock scope of `body` (see LockedBody); `fn` gets the scope (its `.signal` is made
 * on demand). `patch`: more fields of the frame `fn` runs in (the caller's context and the scope in
 * one frame). The scope is joined to the enclosing one (lost when it is, as `runInLockScope` does),
 * and stops being watched as soon as the call settles. One frame, and two promises: the call's and
 * the one following the body's result.
 */
export function runLockedBody<T>(body: LockedBody, fn: (scope: LockScope) => Promise<T> | T, patch?: Partial<Frame>): Promise<T> {
  const dead = body.inst.port.lostSignal?.(body.connection);
  const own = new LockScope();
  const onDead: Watcher = (cause, inner) => {
    own.abort(body.adopt && inner ? inner : body.lost(cause));
    return own.reason as LockLostError;
  };
  const unwatch = dead ? watch(dead, body.connection, onDead) : undefined;
  if (dead?.aborted) {
    died(body.connection, 'the connection died');
    onDead(dead.reason, undefined);
  }
  const parent = currentFrame();
  const outer = parent?.lockScope;
  const unjoin = outer ? outer.onAbort((reason) => own.abort(reason)) : undefined;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    unjoin?.();
    unwatch?.();
  };
  if (own.aborted) {
    close();
    return Promise.reject(own.reason);
  }
  try {
    return runInFrame(
      lockScopeFrame(parent, patch, own),
      () =>
        new Promise<T>((resolve, reject) => {
          const settle = own.onAbort((reason) => {
            close();
            reject(reason);
          });
          let result: Promise<T> | T;
          try {
            result = fn(own);
          } catch (error) {
            result = Promise.reject(error);
          }
          Promise.resolve(result).then(
            (value) => {
              settle();
              close();
              // resolved after the loss (the body ignored the signal): the lock did not last
              if (own.aborted) reject(own.reason);
              else resolve(value);
            },
            (error) => {
              settle();
              close();
              if (own.aborted) reject(own.reason);
              else if (isConnectionLost(body.inst, error)) reject(body.lost(error));
              else reject(error);
            },
          );
        }),
    );
  } catch (error) {
    close();
    return Promise.reject(error);
  }
}

/** True when the dialect's converter names `error` a lost connection. */
export function isConnectionLost(inst: Installation, error: unknown): boolean {
  return !(error instanceof LockLostError) && inst.dialect.convertError(error) instanceof LockLostError;
}

/** The one wording of a lock lost with its connection (its factory is in src/faults/context.ts). */
export { lockLostError } from '../faults/context';
