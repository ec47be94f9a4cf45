/**
 * A lock scope's state: lost once `abort(reason)` is called, with hooks for the scopes and bodies
 * inside it; its AbortSignal is made only when asked for (the lock signal: ./lock-signal).
 */
type Hook = (reason: unknown) => void;
const noop = () => undefined;

/** One lock scope: lost once `abort(reason)` is called, or when the scope it is joined to is. */
export class LockScope {
  private _aborted = false;
  private _reason: unknown;
  private _hooks: Set<Hook> | undefined;
  private _controller: AbortController | undefined;

  /** `given`: the signal the scope is lost with, which it then hands out as its own (runWithLockSignal outside any scope). */
  constructor(private readonly _given?: AbortSignal) {}

  get aborted(): boolean {
    return this._aborted;
  }

  /** The LockLostError (or the given signal's reason) it was lost with. */
  get reason(): unknown {
    return this._reason;
  }

  /** The AbortSignal of the scope (made on first use, already aborted when the scope is). */
  get signal(): AbortSignal {
    if (this._given) return this._given;
    if (!this._controller) {
      this._controller = new AbortController();
      if (this._aborted) this._controller.abort(this._reason);
    }
    return this._controller.signal;
  }

  /** Marks the scope lost: aborts its signal, then calls its hooks (scopes inside it, waiting bodies). Idempotent. */
  abort(reason: unknown): void {
    if (this._aborted) return;
    this._aborted = true;
    this._reason = reason;
    this._controller?.abort(reason);
    const hooks = this._hooks;
    this._hooks = undefined;
    hooks?.forEach((hook) => hook(reason));
  }

  /** Calls `hook(reason)` once when the scope is lost (at once when it is); returns the undo. */
  onAbort(hook: Hook): () => void {
    if (this._aborted) {
      hook(this._reason);
      return noop;
    }
    const hooks = (this._hooks ??= new Set());
    hooks.add(hook);
    return () => hooks.delete(hook);
  }
}
