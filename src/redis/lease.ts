import type { LockScope } from '../context/scope';
import { LockLostError } from '../errors';
import { leaseLost } from '../faults/redis';
import type { NodeCall } from './rounds';
import type { LuaScript, NodeCommand } from './scripts';

/** What a lease asks of the Redlock that issued it (implemented by `Redlock`). */
export interface LeaseDriver {
  /** Compare-and-extend on every node; resolves with the new `expiresAt`, or throws LockLostError. */
  extendLease(lease: Lease, ttlMs: number): Promise<number>;
  /** Compare-and-delete on every node; true when a quorum of nodes still held this lease. */
  releaseLease(lease: Lease): Promise<boolean>;
  /** Best-effort compare-and-delete after a loss, so no node keeps the stale key until it expires. */
  cleanupLease(lease: Lease): void;
}

export type LeaseState = 'held' | 'released' | 'lost';

/**
 * How the driver extends and releases a lease, and on how many nodes it must succeed: a
 * Redlock's own leases use its EXTEND/RELEASE scripts and majority; a semaphore's permits
 * bring their own scripts and quorum.
 */
export interface LeaseProtocol {
  readonly extend: LuaScript;
  readonly release: NodeCommand;
  readonly quorum: number;
  /**
   * The release answers only whether the holder was still there, not whether it had expired
   * (a semaphore's `ZREM`): `release()` then also needs the lease's own validity (monotonic
   * clock) not run out when the release is sent, to report it held.
   */
  readonly releaseChecksValidity?: boolean;
}

/** What a lease is on and how it is kept: per lease for a Redlock's, shared by every permit of a semaphore. */
export interface LeaseShape {
  keys: readonly string[];
  resources: readonly string[];
  fenceKey: string;
  /** The driver's monotonic clock (performance.now(), or a test's). */
  clock: () => number;
  /** Scripts and quorum, when not the driver's own (a semaphore's permits). */
  protocol?: LeaseProtocol;
}

/**
 * A Redis lease on one or more keys, held on a quorum of nodes until `expiresAt` (unless
 * extended). Obtained from `Redlock.tryAcquire`, `acquire` or `using`.
 *
 * - `release()` resolves `true` when the lease was still held on a quorum and is now deleted
 *   there, `false` when it had already expired or been taken (it never deletes another
 *   lease's key: compare-and-delete on `value`). A node that does not answer counts as
 *   holding it while the lease is valid if it granted the lease or its last extension
 *   (`_heldOn`); one that answers "not held" never does. It never throws; calling it again
 *   returns the first answer.
 * - `extend(ttlMs)` resolves once a quorum has the keys' TTL reset to `ttlMs`, or throws
 *   `LockLostError` when that can no longer be done (expired, deleted or taken by another
 *   lease); the lease is then `lost` and `signal` is aborted with that error. It retries
 *   unreachable nodes for as long as the lease is valid.
 * - `fencingToken` is strictly greater than the token of every earlier lease on any of these
 *   keys: send it with each guarded write and let the store reject older tokens
 *   (`UPDATE … SET …, fence = $token WHERE id = $1 AND fence < $token`).
 */
export class Lease {
  /** The keys as given by the caller (without namespace and prefix). */
  readonly keys: readonly string[];
  /** The Redis keys actually locked (`namespace:` + prefix + key). */
  readonly resources: readonly string[];
  /** This lease's value (32 hex digits, unique per acquisition attempt): what release and extend compare against. */
  readonly value: string;
  /** Monotonic fencing token, see the class comment. */
  readonly fencingToken: bigint;
  /** TTL (ms) the lease was acquired or last extended with. */
  ttlMs: number;
  /** When the lease was granted (ms since epoch, local clock). */
  readonly acquiredAt: number;
  /** @internal The fencing counter key on each node. */
  readonly fenceKey: string;
  /** @internal Scripts and quorum, when not the driver's own. */
  readonly protocol: LeaseProtocol | undefined;

  private _expiresAt: number;
  /** Validity end on the monotonic clock: what every decision uses (expiresAt is for display). */
  private _validUntil: number;
  /** The last reading of the clock: a later reading below it means the clock stepped back. */
  private _lastRead: number;
  private readonly clock: () => number;
  private _state: LeaseState = 'held';
  private _lostError: LockLostError | undefined;
  private _releasing: Promise<boolean> | undefined;
  /** The last extension (they run one after another); none until the first. */
  private _extending: Promise<unknown> | undefined;
  // Created on first use of `signal` (an AbortController costs more than the rest of a lease).
  private _controller: AbortController | undefined;
  /** The lock scope of the `using()` body that holds this lease (aborted when the lease is lost). */
  private _bodyScope: LockScope | undefined;
  /** `signal` is the body scope's (the outermost scope: one AbortSignal for both, made on first use). */
  private _signalOfScope = false;
  /** Nodes a release (or cleanup) of this lease was sent to: a bit per node below 31, a Set beyond. */
  private _sentMask = 0;
  private _sentMore: Set<number> | undefined;
  /**
   * Nodes known to hold the lease until at least its validity end: they granted it (or its last
   * extension); a bit per node below 31 (nodes beyond are never counted: `_heldOn` is false).
   */
  private _heldMask = 0;

  /**
   * @internal Made by a Redlock (or its semaphores). `validUntil`: until when the lease is valid, on `shape.clock` (monotonic ms); `readAt`: a
   * reading of that clock just taken (saves reading it again), else it is read. The fields come
   * as arguments (no options object per lease).
   */
  constructor(
    private readonly driver: LeaseDriver,
    shape: LeaseShape,
    value: string,
    fencingToken: bigint,
    ttlMs: number,
    acquiredAt: number,
    expiresAt: number,
    validUntil: number,
    readAt?: number,
  ) {
    // The driver hands over arrays of its own, not the caller's: frozen in place.
    this.keys = Object.isFrozen(shape.keys) ? shape.keys : Object.freeze(shape.keys as string[]);
    this.resources = Object.isFrozen(shape.resources) ? shape.resources : Object.freeze(shape.resources as string[]);
    this.fenceKey = shape.fenceKey;
    this.value = value;
    this.fencingToken = fencingToken;
    this.ttlMs = ttlMs;
    this.acquiredAt = acquiredAt;
    this._expiresAt = expiresAt;
    this._validUntil = validUntil;
    this.protocol = shape.protocol;
    this.clock = shape.clock;
    this._lastRead = readAt ?? shape.clock();
  }

  /** Aborted (with a `LockLostError` as `reason`) when the lease is found lost. */
  get signal(): AbortSignal {
    if (this._signalOfScope) return this._bodyScope!.signal;
    this._controller ??= new AbortController();
    if (this._lostError && !this._controller.signal.aborted) this._controller.abort(this._lostError);
    return this._controller.signal;
  }

  /**
   * Until when (ms since epoch, local clock) the lease is guaranteed valid: acquisition start
   * + ttl − clock drift (ttl·driftFactor + 2 ms), i.e. ttl − elapsed − drift from now. For
   * display: validity itself is measured on a monotonic clock (`remainingMs`, `isValid`), so a
   * step of the wall clock changes nothing.
   */
  get expiresAt(): number {
    return this._expiresAt;
  }

  /** Milliseconds of guaranteed validity left (0 when expired, released or lost). */
  get remainingMs(): number {
    return this._state === 'held' ? Math.max(0, this._validUntil - this._now()) : 0;
  }

  get state(): LeaseState {
    return this._state;
  }

  /** Held, and its validity (monotonic clock) not run out. */
  get isValid(): boolean {
    return this._state === 'held' && this._now() < this._validUntil;
  }

  /** Throws `LockLostError` unless the lease is held and not expired: call before a guarded write. */
  assertValid(): void {
    if (this._state === 'lost' && this._lostError) throw this._lostError;
    if (!this.isValid) {
      throw leaseLost(describeKeys(this.keys), `is ${this._state === 'held' ? 'expired' : this._state}`, {
        key: keyDetail(this.keys),
        fencingToken: this.fencingToken,
        expiresAt: this._expiresAt,
      });
    }
  }

  /** Extends the lease to `ttlMs` from now on a quorum; throws `LockLostError` when lost. */
  extend(ttlMs: number): Promise<void> {
    // Extensions of one lease run one after another (user call and auto-extension never interleave).
    const run = (this._extending ?? Promise.resolve()).then(async () => {
      if (this._state === 'lost') throw this._lostError;
      if (this._state === 'released') {
        throw leaseLost(describeKeys(this.keys), 'was released; it cannot be extended', {
          key: keyDetail(this.keys),
          fencingToken: this.fencingToken,
        });
      }
      await this.driver.extendLease(this, ttlMs);
    });
    this._extending = run.catch(() => undefined);
    return run;
  }

  /** Compare-and-delete on all nodes. See the class comment. */
  release(): Promise<boolean> {
    if (!this._releasing) {
      const wasLost = this._state === 'lost';
      if (this._state === 'held') this._state = 'released';
      const releasing = this.driver.releaseLease(this);
      this._releasing = wasLost ? releasing.then(() => false) : releasing;
    }
    return this._releasing;
  }

  /**
   * @internal Called by the driver after a successful extension, before it notes the nodes that
   * confirmed it (`_noteHeld`): the nodes that granted the lease before count no longer.
   */
  _extended(expiresAt: number, validUntil: number, ttlMs: number): void {
    if (this._state !== 'held') return;
    this._heldMask = 0;
    this._expiresAt = expiresAt;
    this._validUntil = validUntil;
    this.ttlMs = ttlMs;
  }

  /** @internal Marks the lease lost, aborts `signal` and cleans up the nodes. Idempotent. */
  _markLost(error: LockLostError): LockLostError {
    if (this._state === 'lost') return this._lostError ?? error;
    if (this._state === 'released') return error;
    this._state = 'lost';
    this._lostError = error;
    this._expiresAt = Math.min(this._expiresAt, Date.now());
    this._validUntil = -Infinity;
    this._controller?.abort(error);
    this._bodyScope?.abort(error);
    this.driver.cleanupLease(this);
    return error;
  }

  /**
   * @internal The lock scope of the `using()` body (holdLeaseWhile), lost when this lease is:
   * `scope` is aborted by `_markLost`, so no AbortSignal or listener is made for it. When it is
   * the outermost scope (`outermost`), the lease's `signal` is the scope's, as runWithLockSignal
   * would hand out. False when the lease's own signal was already made or a body scope was
   * opened before: then the body joins that signal the usual way.
   */
  _openBodyScope(scope: LockScope, outermost: boolean): boolean {
    if (this._controller || this._bodyScope) return false;
    if (this._lostError) scope.abort(this._lostError);
    this._bodyScope = scope;
    this._signalOfScope = outermost;
    return true;
  }

  /** @internal The driver sent (or is sending, in this tick) a release of this lease to `node`. */
  _noteReleaseSent(node: number): void {
    if (node < 31) this._sentMask |= 1 << node;
    else (this._sentMore ??= new Set()).add(node);
  }

  /** @internal `node` granted this lease, or confirmed its last extension (`_extended` starts the set again). */
  _noteHeld(node: number): void {
    if (node < 31) this._heldMask |= 1 << node;
  }

  /**
   * @internal Whether `node` granted this lease or its last extension: its key there outlives
   * the lease's validity (a node that lost it restarted without persistence, which Redlock's
   * assumptions rule out until a TTL has passed).
   */
  _heldOn(node: number): boolean {
    return node < 31 && (this._heldMask & (1 << node)) !== 0;
  }

  /**
   * @internal A grant of this lease that `node` answered after the acquisition was decided:
   * while the lease is held, one more node it is held on (noted, false); otherwise true when the
   * grant must be undone: no release of the lease follows it on the node (none was written to
   * it, or the grant is an answer to a script re-sent after NOSCRIPT, written after the release).
   * A release written to a client after the grant's command runs after it (each client keeps its
   * commands in order).
   */
  _lateGrant(call: NodeCall<number>): boolean {
    const node = call.node;
    if (this._state === 'held') {
      this._noteHeld(node);
      return false;
    }
    if (call.outcome === 'ok' && call.resent) return true;
    return !(node < 31 ? (this._sentMask & (1 << node)) !== 0 : this._sentMore?.has(node) === true);
  }

  /**
   * @internal The clock now. A reading below an earlier one means the clock is not monotonic
   * (a test's injected clock, or a broken one): the validity can no longer be measured, so it is
   * treated as run out.
   */
  _now(): number {
    const t = this.clock();
    if (t < this._lastRead) this._validUntil = -Infinity;
    this._lastRead = t;
    return t;
  }

  /** @internal Monotonic ms of validity left (negative when run out), whatever the state. */
  get _validForMs(): number {
    return this._validUntil - this._now();
  }

  /** @internal The last reading of the clock (taken by `_validForMs`, `remainingMs`, …). */
  get _lastReading(): number {
    return this._lastRead;
  }

  /** @internal The error the lease was lost with, if it was. */
  get _lost(): LockLostError | undefined {
    return this._lostError;
  }
}

/** `"a"` or `["a","b"]`, for messages. */
export function describeKeys(keys: readonly string[]): string {
  return keys.length === 1 ? JSON.stringify(keys[0]) : JSON.stringify(keys);
}

/** The `target` of a lease's LockEvent: its keys as they are, unquoted and comma-separated, as an advisory lock's target. */
export function leaseTarget(keys: readonly string[]): string {
  return keys.join(', ');
}

/** The `key` detail of errors: the single key, or the array. */
export function keyDetail(keys: readonly string[]): string | string[] {
  return keys.length === 1 ? keys[0] : [...keys];
}
