/**
 * Redlock over independent Redis nodes (ioredis clients), with fencing tokens.
 *
 * Algorithm (per attempt): run the acquire script on every node in parallel, each call bounded
 * by `nodeTimeoutMs`; the lease is granted when a quorum ⌊n/2⌋+1 of nodes granted it and
 * validity = ttl − elapsed − drift (drift = ttl·driftFactor + 2 ms) is still positive.
 * Otherwise the nodes that did grant are released at once (compare-and-delete), before any
 * retry, so an acquisition never blocks itself. All keys of a lease are taken on a node by one
 * script, all or nothing.
 *
 * Key layout: a lock key `k` is stored at `{namespace}:{prefix}{k}`: the Redlock's own
 * `namespace` option followed by `:` when it is not empty, then `prefix` (default `lock:`) used
 * verbatim, then the key. Example:
 * namespace `shop`, key `order:42` → `shop:lock:order:42`; no namespace → `lock:order:42`.
 * The fencing counter of a Redlock lives at `{namespace}:{prefix}` itself (the empty key,
 * which is never a valid lock key, so it cannot collide with one).
 *
 * ## Fencing tokens
 * With `fencing: { dataSource }` the token comes from a counter row in that database (see
 * fencing.ts) and the nodes keep no counter (the ACQUIRE_PLAIN script). Otherwise (the default):
 * each node keeps ONE counter per namespace+prefix (one Redis key in all, whatever the number
 * of lock keys). On a node that grants, the acquire script answers
 * t = max(counter, seen) + 1 and stores it (`seen` = the highest token this Redlock instance
 * has seen, so a node that lost its data catches up). The lease's token is
 * T = max of t over the granting nodes. If fewer than a quorum of granting nodes answered T
 * exactly, the lagging granting nodes are raised to T (BUMP script) BEFORE the lease is handed
 * out, and the acquisition counts only if a quorum then holds counter ≥ T.
 * Why this is strictly monotonic: when a lease with token T is handed out, a majority M of the
 * nodes has counter ≥ T, and counters never decrease. Any later acquisition (of any key of
 * this Redlock's keyspace, so in particular of the same key) is granted by a majority Q;
 * M and Q intersect in at least one node m, whose answer is ≥ counter(m) + 1 ≥ T + 1, so the
 * new token max(t over Q) > T. (A later lease on the same key can only be granted on m after
 * the earlier lease's key is gone there, i.e. after its script ran on m; the bump happens
 * within the earlier lease's validity, while its key still blocks m.) Steady state costs no
 * extra round trip: nodes that grant the same acquisitions hold equal counters, so the bump is
 * only sent after an outage or a split vote, and repairs the lagging nodes. The guarantee
 * assumes what Redlock itself assumes: fewer than a quorum of nodes lose their data at once
 * (a node restarted without persistence counts as a failure; use `appendonly yes` or restart
 * it only after the longest TTL has passed).
 */
import { checkOptions, describeValue } from '../arguments';
import { runWithLockSignal } from '../context/lock-signal';
import type { Redis } from 'ioredis';
import { LockConfigError, LockLostError, LockNotAvailableError } from '../errors';
import { emitTo, observerOptionProblems, observersOf, type LockEvent, type LockObserver } from '../observe/events';
import { Deadlines, type Deadline } from './deadlines';
import { DatabaseFencing, type FencingOptions } from './fencing';
import { describeKeys, keyDetail, Lease, LeaseDriver } from './lease';
import { checkLeaseTransaction, runInLeaseTransaction, type LeaseTransactionOptions } from './lease-transaction';
import { leaseValue } from './lease-value';
import { ACQUIRE, ACQUIRE_PLAIN, BUMP, EXTEND, LuaScript, RELEASE } from './scripts';

/** What a Redlock node is: an ioredis client (not a Cluster) of an independent Redis node. */
export type RedlockClient = Redis;

/** One key (a non-empty string; numbers and bigints are converted) or several (one lease on all). */
export type LockKey = string | number | bigint;
export type LockKeys = LockKey | readonly LockKey[];

export interface RedlockOptions {
  /** Put before every key, followed by `:` (default none): e.g. your application's name. */
  namespace?: string;
  /** Prefix of every lock key after the namespace (default `'lock:'`), used verbatim. */
  prefix?: string;
  /**
   * Mint fencing tokens in this database instead of Redis: one counter row per key, strictly
   * increasing even after every Redis node lost its data. Costs one statement per acquisition.
   * The DataSource must be installed (`installLocking`) and have the table (`createFencingTable`).
   */
  fencing?: FencingOptions;
  /** Lock events of this Redlock's leases (kind 'lease': acquired, released with heldMs, not_available, lost); errors they throw are ignored. */
  observers?: readonly LockObserver[];
  /** Shorthand for one observer. */
  onLockEvent?: (event: LockEvent) => void;
  /** Clock drift allowance as a fraction of the TTL (default 0.01); validity = ttl − elapsed − (ttl·driftFactor + 2 ms). */
  driftFactor?: number;
  /** Default retries of `acquire`/`using` after the first attempt (default 10). */
  retryCount?: number;
  /** Default delay between attempts, ms (default 200). */
  retryDelayMs?: number;
  /** Default random ± jitter added to the delay, ms (default 100). */
  retryJitterMs?: number;
  /** `using()` extends the lease when this many ms of validity are left (default min(500, validity/2)). */
  automaticExtensionThresholdMs?: number;
  /** Per-node timeout of one script call, ms (default ttl/10 clamped to 50…1000). A node slower than this votes against. */
  nodeTimeoutMs?: number;
}

export interface AcquireOptions {
  retryCount?: number;
  retryDelayMs?: number;
  retryJitterMs?: number;
}

export interface UsingOptions extends AcquireOptions, LeaseTransactionOptions {
  automaticExtensionThresholdMs?: number;
}

/** What one node answered to one acquisition attempt (in `LockNotAvailableError.details.nodes`). */
export interface NodeResult {
  node: number;
  address: string;
  /** pending: no answer yet when the attempt was decided (its answer is handled when it comes). */
  result: 'granted' | 'locked' | 'error' | 'timeout' | 'not_ready' | 'pending';
  /** granted: the node's fencing counter answer. */
  token?: string;
  /** locked: which key was held by another lease. */
  lockedKey?: string;
  /** error / not_ready: why. */
  error?: string;
}

type NodeCall<T> =
  | { node: number; outcome: 'ok'; reply: T }
  | { node: number; outcome: 'error' | 'timeout' | 'not_ready' | 'pending'; error: string };

const DEFAULTS = {
  prefix: 'lock:',
  driftFactor: 0.01,
  retryCount: 10,
  retryDelayMs: 200,
  retryJitterMs: 100,
};

/** Statuses in which a client is alive: ready, or (re)connecting on its own. */
const LIVE_STATUSES = new Set(['ready', 'connecting', 'connect', 'reconnecting', 'close']);
/** Of the live statuses, those in which a command is sent (ioredis queues it until ready). */
const SEND_STATUSES = new Set(['ready', 'connecting', 'connect']);

export class Redlock implements LeaseDriver {
  readonly clients: readonly RedlockClient[];
  readonly quorum: number;
  readonly namespace: string;
  readonly prefix: string;
  /** Set with `fencing: { dataSource }`: tokens come from the database. */
  readonly fencing: DatabaseFencing | undefined;
  readonly driftFactor: number;
  readonly retryCount: number;
  readonly retryDelayMs: number;
  readonly retryJitterMs: number;
  readonly automaticExtensionThresholdMs: number | undefined;
  readonly nodeTimeoutMs: number | undefined;
  private readonly allNodes: readonly number[];
  /** Highest fencing token this instance has seen (sent to nodes so a node that lost its data catches up). */
  private seen = 0n;
  /** `seen` as sent to the nodes (kept with it, so an acquisition formats no BigInt). */
  private seenText = '0';
  /** `namespace:` + prefix, the start of every Redis key (and the Redis fencing counter itself). */
  private readonly base: string;
  /** Sends a lease event to this Redlock's observers; null when there are none (so no event is built). */
  private readonly emit: ((event: LockEvent) => void) | null;
  /** The per-node timeouts of every round (one timer for all). */
  private readonly deadlines = new Deadlines();

  constructor(clients: RedlockClient | readonly RedlockClient[], options: RedlockOptions = {}) {
    checkOptions('new Redlock(clients, options?)', options);
    const list: RedlockClient[] = Array.isArray(clients) ? [...clients] : clients == null ? [] : [clients as RedlockClient];
    if (list.length === 0) {
      throw new LockConfigError('Redlock needs at least one ioredis client (one per independent Redis node)');
    }
    const seenClients = new Set<unknown>();
    list.forEach((client, i) => {
      const c = client as unknown as Partial<Redis> & { isCluster?: boolean };
      if (!c || typeof c.evalsha !== 'function' || typeof c.eval !== 'function' || typeof c.status !== 'string') {
        throw new LockConfigError(`Redlock: clients[${i}] is not an ioredis client`, { node: i });
      }
      if (c.isCluster) {
        throw new LockConfigError(
          `Redlock: clients[${i}] is an ioredis Cluster; Redlock needs one client per independent node (a cluster is one node to Redlock, and its keys may sit on different shards)`,
          { node: i },
        );
      }
      if (seenClients.has(client)) {
        throw new LockConfigError(`Redlock: clients[${i}] is given twice; each node must be a distinct client (a duplicate would vote twice)`, { node: i });
      }
      seenClients.add(client);
    });
    this.clients = Object.freeze(list);
    this.assertClientsUsable();
    this.quorum = Math.floor(list.length / 2) + 1;
    this.allNodes = Object.freeze(list.map((_, i) => i));

    const prefix = options.prefix ?? DEFAULTS.prefix;
    if (typeof prefix !== 'string') throw new LockConfigError('Redlock: prefix must be a string');
    this.prefix = prefix;
    const namespace = options.namespace ?? '';
    if (typeof namespace !== 'string') throw new LockConfigError(`Redlock: namespace must be a string, got ${typeof namespace}`);
    this.namespace = namespace;
    this.base = (namespace ? `${namespace}:` : '') + prefix;
    const observerProblems = observerOptionProblems(options);
    if (observerProblems.length) throw new LockConfigError(`Redlock: ${observerProblems.join('; ')}`);
    const observers = observersOf(options);
    this.emit = observers.length ? (event) => emitTo(observers, event) : null;
    this.fencing = options.fencing === undefined ? undefined : new DatabaseFencing(options.fencing, 'Redlock');
    this.driftFactor = checkNumber('driftFactor', options.driftFactor ?? DEFAULTS.driftFactor, (v) => v >= 0 && v < 1, 'a number in [0, 1)');
    const retries = checkRetryOptions(options, DEFAULTS);
    this.retryCount = retries.retryCount;
    this.retryDelayMs = retries.retryDelayMs;
    this.retryJitterMs = retries.retryJitterMs;
    if (options.automaticExtensionThresholdMs !== undefined) {
      checkNumber('automaticExtensionThresholdMs', options.automaticExtensionThresholdMs, (v) => v > 0, 'a positive number of ms');
    }
    this.automaticExtensionThresholdMs = options.automaticExtensionThresholdMs;
    if (options.nodeTimeoutMs !== undefined) {
      checkNumber('nodeTimeoutMs', options.nodeTimeoutMs, (v) => v > 0, 'a positive number of ms');
    }
    this.nodeTimeoutMs = options.nodeTimeoutMs;
  }

  /**
   * One attempt, no retry and no delay: the lease, or `null` when a quorum did not grant it
   * (held by another lease, or too many nodes unreachable). For the reason, use
   * `acquire(key, ttl, { retryCount: 0 })`, whose error lists every node's answer.
   */
  async tryAcquire(key: LockKeys, ttlMs: number): Promise<Lease | null> {
    const req = this.request(key, ttlMs);
    const started = Date.now();
    const { lease } = await this.attempt(req);
    if (this.emit) {
      if (lease) this.acquired(lease, started);
      else this.emit({ type: 'not_available', kind: 'lease', target: describeKeys(req.keys), waitedMs: Date.now() - started });
    }
    return lease;
  }

  /**
   * Acquires, retrying `retryCount` times after the first attempt, `retryDelayMs` ± `retryJitterMs`
   * apart. Throws `LockNotAvailableError` (details: key, attempts, nodes, waitedMs) when no attempt
   * reached a quorum.
   */
  async acquire(key: LockKeys, ttlMs: number, options: AcquireOptions = EMPTY): Promise<Lease> {
    checkOptions('Redlock.acquire(key, ttlMs, options?)', options);
    return this.acquireRequest(this.request(key, ttlMs), options);
  }

  private async acquireRequest(req: AcquireRequest, options: AcquireOptions): Promise<Lease> {
    const retry = options === EMPTY ? this : checkRetryOptions(options, this);
    const started = Date.now();
    let nodes: NodeResult[] = [];
    for (let attempt = 1; ; attempt++) {
      const result = await this.attempt(req);
      if (result.lease) {
        if (this.emit) this.acquired(result.lease, started);
        return result.lease;
      }
      nodes = result.nodes;
      if (attempt > retry.retryCount) {
        const waitedMs = Date.now() - started;
        this.emit?.({ type: 'not_available', kind: 'lease', target: describeKeys(req.keys), waitedMs });
        throw new LockNotAvailableError(
          `Redis lease on ${describeKeys(req.keys)} not acquired after ${attempt} attempt(s) in ${waitedMs} ms: ` +
            `quorum ${this.quorum} of ${this.clients.length} not reached (${nodes.map(describeNode).join('; ')})`,
          { key: keyDetail(req.keys), attempts: attempt, nodes, waitedMs, quorum: this.quorum },
        );
      }
      const jitter = retry.retryJitterMs ? Math.floor((Math.random() * 2 - 1) * retry.retryJitterMs) : 0;
      await sleep(Math.max(0, retry.retryDelayMs + jitter));
    }
  }

  /**
   * Acquires (with `acquire`'s retries), runs `fn(lease)`, extends the lease automatically when
   * `automaticExtensionThresholdMs` of validity are left, and always releases it.
   * If the lease is lost (an extension finds the key deleted, expired or taken, or the lease
   * could not be confirmed before it expired), `lease.signal` is aborted and, once `fn` has
   * settled, `using` rejects with `LockLostError`, even when `fn` resolved.
   */
  async using<T>(key: LockKeys, ttlMs: number, fn: (lease: Lease) => Promise<T> | T, options: UsingOptions = EMPTY): Promise<T> {
    if (typeof fn !== 'function') throw new LockConfigError(`Redlock.using: the third argument must be a function (got ${describeValue(fn)})`);
    checkOptions('Redlock.using(key, ttlMs, fn, options?)', options);
    const req = this.request(key, ttlMs);
    const validity = ttlMs - this.drift(ttlMs);
    const threshold = options.automaticExtensionThresholdMs ?? this.automaticExtensionThresholdMs ?? Math.min(500, Math.floor(validity / 2));
    if (!(threshold > 0 && threshold < validity)) {
      checkNumber('automaticExtensionThresholdMs', threshold, (v) => v > 0 && v < validity, `a positive number of ms below the lease validity (${validity} ms for a ttl of ${ttlMs} ms)`);
    }
    // Checked before anything is sent: the transaction option and its installed DataSource.
    const tx = options === EMPTY ? undefined : checkLeaseTransaction(options, this.fencing?.dataSource);
    const lease = await this.acquireRequest(req, options);

    let done = false;
    let timer: NodeJS.Timeout | undefined;
    let extending: Promise<void> | undefined;
    const schedule = (): void => {
      if (done || lease.state !== 'held') return;
      timer = setTimeout(() => {
        timer = undefined;
        // A failure marks the lease lost and aborts its signal (inside extendLease).
        extending = lease.extend(ttlMs).then(schedule, () => undefined);
      }, Math.max(0, lease.expiresAt - threshold - Date.now()));
    };
    schedule();

    let result: T | undefined;
    let failed = false;
    let failure: unknown;
    try {
      // With { transaction: true }, fn runs in a database transaction that commits only after
      // the lease was confirmed (extended) on a quorum; a lease lost before rolls it back.
      // the body is a lock scope: currentLockSignal() inside is lease.signal
      result = await runWithLockSignal(lease.signal, () => (tx ? runInLeaseTransaction(tx, lease, ttlMs, fn) : fn(lease)));
    } catch (error) {
      failed = true;
      failure = error;
    }
    done = true;
    if (timer) clearTimeout(timer);
    if (extending) await extending;

    const finishedAt = Date.now();
    const heldToTheEnd = lease.state === 'held' && finishedAt <= lease.expiresAt;
    const lostBefore = lease._lost;
    const stillHeld = await lease.release();
    if (lostBefore || (!heldToTheEnd && !stillHeld)) {
      // Lost during fn, or fn outlived the lease's validity and the lease was no longer on a
      // quorum at release: someone else may have held it meanwhile.
      const lost =
        lostBefore ??
        new LockLostError(
          `Redis lease on ${describeKeys(lease.keys)} expired while the function ran (${finishedAt - lease.acquiredAt} ms; the event loop may have been blocked past the automatic extension)`,
          { key: keyDetail(lease.keys), fencingToken: lease.fencingToken, expiresAt: lease.expiresAt },
        );
      if (failed && failure !== lost) {
        throw new LockLostError(lost.message, { ...lost.details, cause: failure });
      }
      throw lost;
    }
    if (failed) throw failure;
    return result as T;
  }

  // ---- LeaseDriver ----------------------------------------------------------------------

  /** @internal */
  async extendLease(lease: Lease, ttlMs: number): Promise<number> {
    checkTtl(ttlMs, this.drift(ttlMs));
    const timeoutMs = this.timeoutFor(ttlMs);
    for (;;) {
      const start = Date.now();
      const isExtended = (c: NodeCall<number>) => c.outcome === 'ok' && Number(c.reply) === 1;
      const isMismatch = (c: NodeCall<number>) => c.outcome === 'ok' && Number(c.reply) !== 1;
      const calls = await this.round<number>(this.allNodes, EXTEND, lease.resources, [lease.value, String(ttlMs)], timeoutMs, (answered) => {
        return count(answered, isExtended) >= this.quorum || count(answered, isMismatch) > this.clients.length - this.quorum;
      });
      if (lease.state !== 'held') {
        throw lease._lost ?? new LockLostError(`Redis lease on ${describeKeys(lease.keys)} was released while being extended`, { key: keyDetail(lease.keys) });
      }
      const extended = count(calls, isExtended);
      const mismatched = count(calls, isMismatch);
      if (extended >= this.quorum) {
        const expiresAt = start + ttlMs - this.drift(ttlMs);
        lease._extended(expiresAt, ttlMs);
        return expiresAt;
      }
      const now = Date.now();
      const definitelyLost = mismatched > this.clients.length - this.quorum;
      if (definitelyLost || now >= lease.expiresAt) {
        const why = definitelyLost
          ? `the key is gone or belongs to another lease on ${mismatched} of ${this.clients.length} nodes`
          : `a quorum could not be reached before it expired (${calls.map((c) => `node ${c.node}: ${c.outcome === 'ok' ? 'extended' : c.outcome}`).join('; ')})`;
        const error = new LockLostError(`Redis lease on ${describeKeys(lease.keys)} lost: ${why}`, {
          key: keyDetail(lease.keys),
          fencingToken: lease.fencingToken,
          expiresAt: lease.expiresAt,
          nodes: calls.map((c) => ({ node: c.node, result: c.outcome === 'ok' ? (Number(c.reply) === 1 ? 'extended' : 'lost') : c.outcome })),
        });
        this.emit?.({ type: 'lost', kind: 'lease', target: describeKeys(lease.keys), heldMs: Date.now() - lease.acquiredAt });
        throw lease._markLost(error);
      }
      // Some nodes unreachable but the lease is still valid: try again shortly.
      await sleep(Math.max(1, Math.min(this.retryDelayMs, Math.floor((lease.expiresAt - now) / 2))));
    }
  }

  /** @internal */
  async releaseLease(lease: Lease): Promise<boolean> {
    this.noteReleaseSent(lease);
    // Resolves once a quorum confirms; the other nodes' deletes go on (each client keeps
    // its commands in order, so a following acquire on that node runs after the delete).
    const wasHeld = (c: NodeCall<number>) => c.outcome === 'ok' && Number(c.reply) === lease.resources.length;
    const calls = await this.releaseOn(this.allNodes, lease.resources, lease.value, this.timeoutFor(lease.ttlMs), (answered) => count(answered, wasHeld) >= this.quorum);
    const held = count(calls, wasHeld);
    this.emit?.({ type: 'released', kind: 'lease', target: describeKeys(lease.keys), heldMs: Date.now() - lease.acquiredAt });
    return held >= this.quorum;
  }

  /** @internal */
  cleanupLease(lease: Lease): void {
    this.noteReleaseSent(lease);
    void this.releaseOn(this.allNodes, lease.resources, lease.value, this.timeoutFor(lease.ttlMs));
  }

  // ---- internals -----------------------------------------------------------------------

  private request(key: LockKeys, ttlMs: number): AcquireRequest {
    this.assertClientsUsable();
    checkTtl(ttlMs, this.drift(ttlMs));
    const base = this.base;
    // The common case first: one non-empty, well-formed string key.
    if (typeof key === 'string' && key.length > 0 && isWellFormed(key)) {
      const resource = base + key;
      return { keys: [key], resources: [resource], fenceKey: base, ttlMs };
    }
    const keys = normalizeKeys(key);
    return { keys, resources: keys.map((k) => base + k), fenceKey: base, ttlMs };
  }

  private drift(ttlMs: number): number {
    return Math.round(ttlMs * this.driftFactor) + 2;
  }

  private timeoutFor(ttlMs: number): number {
    return this.nodeTimeoutMs ?? Math.min(1000, Math.max(50, Math.floor(ttlMs / 10)));
  }

  private acquired(lease: Lease, started: number): void {
    this.emit?.({ type: 'acquired', kind: 'lease', target: describeKeys(lease.keys), waitedMs: Date.now() - started });
  }

  /** One Redlock attempt; see the file comment. */
  private async attempt(req: AcquireRequest): Promise<{ lease: Lease | null; nodes: NodeResult[] }> {
    const { resources, ttlMs } = req;
    const value = leaseValue();
    const timeoutMs = this.timeoutFor(ttlMs);
    const start = Date.now();
    const plain = this.fencing !== undefined;
    let lease: Lease | null = null;
    let settled = false;
    // A grant that arrives after the attempt was decided (or timed out) is undone, unless it
    // belongs to a lease that is live or whose release was sent to that node (each client keeps
    // its commands in order, so that release runs after this grant).
    const lateGrants: number[] = [];
    const isGrant = plain ? isPlainGrant : isFencedGrant;
    const onLate = (call: NodeCall<AcquireReply>): void => {
      if (!isGrant(call)) return;
      if (!plain) this.see(BigInt(call.reply as number));
      if (!settled) lateGrants.push(call.node);
      else if (!lease || (lease.state !== 'held' && !lease._releaseSentTo(call.node))) {
        void this.releaseOn([call.node], resources, value, timeoutMs);
      }
    };
    // Decided early once a quorum granted (and, with Redis counters, a quorum answered the same
    // highest token, so no bump is needed); a refusal waits for every node's answer (the error
    // lists them all).
    const decided = plain
      ? (answered: Array<NodeCall<AcquireReply>>): boolean => count(answered, isPlainGrant) >= this.quorum
      : (answered: Array<NodeCall<AcquireReply>>): boolean => {
          let max = -1n;
          let atMax = 0;
          for (const c of answered) {
            if (!isFencedGrant(c)) continue;
            const t = BigInt(c.reply as number);
            if (t > max) {
              max = t;
              atMax = 1;
            } else if (t === max) atMax++;
          }
          return atMax >= this.quorum;
        };
    const calls = plain
      ? await this.round<AcquireReply>(this.allNodes, ACQUIRE_PLAIN, resources, [value, String(ttlMs)], timeoutMs, decided, onLate)
      : await this.round<AcquireReply>(this.allNodes, ACQUIRE, [req.fenceKey, ...resources], [value, String(ttlMs), this.seenText], timeoutMs, decided, onLate);

    const granted: Array<{ node: number; token: bigint }> = [];
    for (const c of calls) if (isGrant(c)) granted.push({ node: c.node, token: plain ? 0n : BigInt(c.reply as number) });

    let token = 0n;
    let ok = false;
    let failure: unknown;
    if (granted.length >= this.quorum) {
      if (plain) {
        // Minted only now, with the lease granted on a quorum: see fencing.ts.
        try {
          token = await this.fencing!.mint(resources);
          ok = true;
        } catch (error) {
          failure = error;
        }
      } else {
        token = granted.reduce((max, g) => (g.token > max ? g.token : max), 0n);
        const lagging = granted.filter((g) => g.token < token).map((g) => g.node);
        let confirmed = granted.length - lagging.length;
        if (lagging.length > 0) {
          const bumps = this.round(lagging, BUMP, [req.fenceKey], [token.toString()], timeoutMs);
          // Enough nodes already hold the token: the others are repaired in the background.
          if (confirmed < this.quorum) confirmed += count(await bumps, (c) => c.outcome === 'ok');
        }
        ok = confirmed >= this.quorum;
        for (const g of granted) this.see(g.token);
      }
    }

    const expiresAt = start + ttlMs - this.drift(ttlMs);
    if (ok && Date.now() < expiresAt) {
      lease = new Lease(this, { keys: req.keys, resources, fenceKey: req.fenceKey, value, fencingToken: token, ttlMs, acquiredAt: start, expiresAt });
    } else if (granted.length > 0) {
      await this.releaseOn(
        granted.map((g) => g.node),
        resources,
        value,
        timeoutMs,
      );
    }
    settled = true;
    if (!lease && lateGrants.length > 0) void this.releaseOn(lateGrants, resources, value, timeoutMs);
    // A database that cannot mint the token is not a busy lock: it fails the call.
    if (failure !== undefined) throw failure;
    if (lease) return { lease, nodes: [] };
    return {
      lease,
      nodes: calls.map((c): NodeResult => {
        const address = this.address(c.node);
        if (c.outcome !== 'ok') return { node: c.node, address, result: c.outcome, error: c.error };
        const reply = c.reply;
        const node = c.node;
        if (isGrant(c)) return plain ? { node: c.node, address, result: 'granted' } : { node: c.node, address, result: 'granted', token: String(reply) };
        const lockedIndex = plain ? Number(reply) : -Number(reply);
        return { node, address, result: 'locked', lockedKey: req.keys[lockedIndex - 1] };
      }),
    };
  }

  /** Which nodes `round` is about to send a release to (the same status test, in the same tick). */
  private noteReleaseSent(lease: Lease): void {
    for (const i of this.allNodes) if (SEND_STATUSES.has(this.clients[i].status)) lease._noteReleaseSent(i);
  }

  private see(token: bigint): void {
    if (token > this.seen) {
      this.seen = token;
      this.seenText = token.toString();
    }
  }

  private releaseOn(
    nodes: readonly number[],
    resources: readonly string[],
    value: string,
    timeoutMs: number,
    decided?: (answered: Array<NodeCall<number>>) => boolean,
  ): Promise<Array<NodeCall<number>>> {
    return this.round<number>(nodes, RELEASE, resources, [value], timeoutMs, decided);
  }

  /**
   * Runs a script on the given nodes in parallel and never rejects. Resolves with one NodeCall
   * per node (in `nodes` order) as soon as every node answered, or `decided(answers so far)` is
   * true, or `timeoutMs` passed (a deadline of `this.deadlines`). A node that is down (reconnecting) or
   * closed is sent nothing (`not_ready`); one that has not answered when the round resolves is
   * `pending` (decided early) or `timeout`, and its answer, when it comes, goes to `onLate`.
   */
  private round<T>(
    nodes: readonly number[],
    script: LuaScript,
    keys: readonly string[],
    args: string[],
    timeoutMs: number,
    decided?: (answered: Array<NodeCall<T>>) => boolean,
    onLate?: (call: NodeCall<T>) => void,
  ): Promise<Array<NodeCall<T>>> {
    return new Promise((resolve) => {
      const results: Array<NodeCall<T> | undefined> = new Array(nodes.length);
      const answered: Array<NodeCall<T>> = [];
      let settled = false;
      let deadline: Deadline | undefined;
      const finish = (unanswered: 'pending' | 'timeout'): void => {
        settled = true;
        deadline?.cancel();
        const error = unanswered === 'timeout' ? `no answer within ${timeoutMs} ms` : 'no answer yet when the quorum decided';
        resolve(nodes.map((node, i) => results[i] ?? { node, outcome: unanswered, error }));
      };
      const record = (i: number, call: NodeCall<T>): void => {
        if (settled) return onLate?.(call);
        results[i] = call;
        answered.push(call);
        if (answered.length === nodes.length || decided?.(answered)) finish('pending');
      };
      // One argument list for every node (ioredis flattens and copies it): EVALSHA sha numkeys keys… args…
      const argv: Array<string | number> = [script.sha, keys.length];
      for (const k of keys) argv.push(k);
      for (const a of args) argv.push(a);
      for (let i = 0; i < nodes.length; i++) {
        const node = nodes[i];
        const client = this.clients[node];
        if (!SEND_STATUSES.has(client.status)) {
          record(i, { node, outcome: 'not_ready', error: `not connected (status ${client.status})` });
          continue;
        }
        const answered = (reply: unknown) => record(i, { node, outcome: 'ok', reply: reply as T });
        const failed = (error: unknown) => {
          // once more with EVAL when the node does not have the script cached (restarted)
          if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
            (client.eval as unknown as SendArgv).call(client, [script.source, ...argv.slice(1)]).then(answered, (again: unknown) => record(i, { node, outcome: 'error', error: again instanceof Error ? again.message : String(again) }));
          } else record(i, { node, outcome: 'error', error: error instanceof Error ? error.message : String(error) });
        };
        (client.evalsha as unknown as SendArgv).call(client, argv).then(answered, failed);
      }
      if (!settled) deadline = this.deadlines.add(timeoutMs, () => finish('timeout'));
    });
  }

  private address(node: number): string {
    const options = (this.clients[node] as unknown as { options?: { host?: string; port?: number; path?: string } }).options;
    if (!options) return `#${node}`;
    return options.path ?? `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
  }

  /** A client that was quit or never connected is a configuration error, not a node that is down. */
  private assertClientsUsable(): void {
    this.clients.forEach((client, i) => {
      if (LIVE_STATUSES.has(client.status)) return;
      const hint =
        client.status === 'wait'
          ? 'it was created with lazyConnect and never connected: call client.connect() first'
          : client.status === 'end'
            ? 'it was closed (quit/disconnect) and will not reconnect'
            : `status '${client.status}' cannot run scripts`;
      throw new LockConfigError(`Redlock: clients[${i}] (${this.address(i)}) is not usable: ${hint}`, { node: i, status: client.status });
    });
  }
}

// ---- helpers ---------------------------------------------------------------------------------

/** An ioredis command called with one array of arguments (ioredis flattens its arguments). */
type SendArgv = (argv: ReadonlyArray<string | number>) => Promise<unknown>;

interface AcquireRequest {
  keys: string[];
  resources: string[];
  fenceKey: string;
  ttlMs: number;
}

/** ACQUIRE (Redis counters): the token (≥ 1) or −(index of the held key); ACQUIRE_PLAIN: 0 or that index. */
type AcquireReply = number;

type OkCall = { node: number; outcome: 'ok'; reply: AcquireReply };
const isFencedGrant = (c: NodeCall<AcquireReply>): c is OkCall => c.outcome === 'ok' && Number(c.reply) > 0;
const isPlainGrant = (c: NodeCall<AcquireReply>): c is OkCall => c.outcome === 'ok' && Number(c.reply) === 0;

/** The default options object: recognised by identity, so the hot path skips re-validating defaults. */
const EMPTY: UsingOptions = Object.freeze({});

function count<T>(items: readonly T[], predicate: (item: T) => boolean): number {
  let n = 0;
  for (const item of items) if (predicate(item)) n++;
  return n;
}

const hasIsWellFormed = typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function';

function isWellFormed(s: string): boolean {
  if (hasIsWellFormed) return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
  return Buffer.from(s, 'utf8').toString('utf8') === s;
}

function normalizeKeys(key: LockKeys): string[] {
  const list = Array.isArray(key) ? (key as readonly LockKey[]) : [key as LockKey];
  if (list.length === 0) throw new LockConfigError('Redlock: no key given (an empty array of keys)');
  const out: string[] = [];
  for (const k of list) {
    if (typeof k === 'number' && !Number.isFinite(k)) throw new LockConfigError(`Redlock: lock key ${k} is not a finite number`, { key: k });
    if (typeof k !== 'string' && typeof k !== 'number' && typeof k !== 'bigint') {
      throw new LockConfigError(`Redlock: a lock key must be a string, number or bigint, got ${k === null ? 'null' : typeof k}`, { key: k });
    }
    const s = String(k);
    if (s.length === 0) throw new LockConfigError('Redlock: a lock key must not be empty', { key: k });
    // A lone surrogate would be sent as U+FFFD, so two different keys would be one lock.
    if (!isWellFormed(s)) throw new LockConfigError('Redlock: a lock key must be well-formed UTF-16 (it has a lone surrogate)', { key: k });
    // The same key twice in one lease is the same lock (e.g. a transfer from an account to itself).
    if (!out.includes(s)) out.push(s);
  }
  return out;
}

function checkTtl(ttlMs: unknown, drift: number): void {
  if (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs <= 0) {
    throw new LockConfigError(`Redlock: ttlMs must be a positive integer number of milliseconds, got ${String(ttlMs)}`, { ttlMs });
  }
  if (ttlMs <= drift) {
    throw new LockConfigError(`Redlock: ttlMs ${ttlMs} leaves no validity after the clock-drift allowance of ${drift} ms`, { ttlMs });
  }
}

function checkNumber(name: string, value: unknown, ok: (v: number) => boolean, expected: string): number {
  if (typeof value !== 'number' || Number.isNaN(value) || !ok(value)) {
    throw new LockConfigError(`Redlock: ${name} must be ${expected}, got ${String(value)}`, { [name]: value });
  }
  return value;
}

function checkRetryOptions(options: AcquireOptions, defaults: Required<AcquireOptions>): Required<AcquireOptions> {
  return {
    retryCount: checkNumber('retryCount', options.retryCount ?? defaults.retryCount, (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer'),
    retryDelayMs: checkNumber('retryDelayMs', options.retryDelayMs ?? defaults.retryDelayMs, (v) => Number.isFinite(v) && v >= 0, 'a non-negative number of ms'),
    retryJitterMs: checkNumber('retryJitterMs', options.retryJitterMs ?? defaults.retryJitterMs, (v) => Number.isFinite(v) && v >= 0, 'a non-negative number of ms'),
  };
}

function describeNode(n: NodeResult): string {
  const what =
    n.result === 'granted' ? 'granted' : n.result === 'locked' ? `held by another lease${n.lockedKey !== undefined ? ` (${JSON.stringify(n.lockedKey)})` : ''}` : `${n.result}: ${n.error}`;
  return `node ${n.node} ${n.address} ${what}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
