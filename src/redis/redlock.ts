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
 * Key layout: see lock-keys.ts. The parts of a Redlock, one job each: its options and checks
 * (redlock-options.ts), its nodes (redlock-clients.ts), one round of a script over them
 * (rounds.ts, with deadlines.ts), quorum voting (quorum.ts), the scripts (scripts.ts), the clock
 * (clock.ts), the lease object (lease.ts) and `using` (hold-lease.ts); this file puts them together.
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
import { checkFunction, checkOptions } from '../arguments';
import { badOption, badOptions } from '../faults/options';
import { leaseLost, leaseNotAcquired } from '../faults/redis';
import { emitTo, observerOptionProblems, observersOf, type LockEvent } from '../observe/events';
import { checkClock, driftOf, performanceReading, stillValid } from './clock';
import { Deadlines } from './deadlines';
import { DatabaseFencing } from './fencing';
import { holdLeaseWhile } from './hold-lease';
import { describeKeys, keyDetail, Lease, LeaseDriver, leaseTarget, type LeaseProtocol } from './lease';
import { checkLeaseTransaction, runInLeaseTransaction } from './lease-transaction';
import { leaseValue } from './lease-value';
import { lockRequest, type AcquireRequest, type LockKeys } from './lock-keys';
import { isExtended, isMismatch, isTokenGrant, isZeroGrant, majority, sameHighestToken, tokenGrants, type NodeResult } from './quorum';
import { assertClientsUsable, checkClients, type RedlockClient } from './redlock-clients';
import {
  checkNumber,
  checkRetryOptions,
  checkTtl,
  DEFAULTS,
  EMPTY,
  retryDelay,
  sleep,
  type AcquireOptions,
  type RedlockOptions,
  type UsingOptions,
} from './redlock-options';
import { count, IGNORE_ANSWERS, issue, nodeAddress, runRound, sendRound, settleIssued, type Issued, type NodeCall, type RoundListener } from './rounds';
import { ACQUIRE, ACQUIRE_PLAIN, BUMP, EXTEND, RELEASE, type NodeCommand } from './scripts';
import { RedisSemaphore, type SemaphoreHost } from './semaphore';

export type { LockKey, LockKeys } from './lock-keys';
export type { NodeResult } from './quorum';
export type { RedlockClient } from './redlock-clients';
export type { AcquireOptions, RedlockOptions, UsingOptions } from './redlock-options';

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
  /** @internal The monotonic clock (see RedlockOptions.clock). */
  readonly clock: () => number;
  private readonly allNodes: readonly number[];
  /** Highest fencing token this instance has seen (sent to nodes so a node that lost its data catches up). */
  private seen = 0n;
  /** `seen` as sent to the nodes (kept with it, so an acquisition formats no BigInt). */
  private seenText = '0';
  /** `namespace:` + prefix, the start of every Redis key (and the Redis fencing counter itself). */
  private readonly base: string;
  /** Sends a lease event to this Redlock's observers; null when there are none (so no event is built). */
  private readonly emit: ((event: LockEvent) => void) | null;
  /** How this Redlock's own leases are extended and released. */
  private readonly protocol: LeaseProtocol;
  /** What its semaphores share with it (made on first use). */
  private semaphoreHost: SemaphoreHost | undefined;
  /** The per-node timeouts of every round (one timer for all). */
  private readonly deadlines = new Deadlines();
  /** When an acquisition round is decided (made once): a quorum of grants, or a quorum at the same highest token. */
  private readonly plainDecided = (answered: Array<NodeCall<number>>): boolean => count(answered, isZeroGrant) >= this.quorum;
  private readonly tokenDecided = (answered: Array<NodeCall<number>>): boolean => sameHighestToken(answered, this.quorum);

  constructor(clients: RedlockClient | readonly RedlockClient[], options: RedlockOptions = {}) {
    checkOptions('new Redlock(clients, options?)', options);
    this.clients = checkClients(clients);
    assertClientsUsable(this.clients);
    this.quorum = majority(this.clients.length);
    this.protocol = { extend: EXTEND, release: RELEASE, quorum: this.quorum };
    this.allNodes = Object.freeze(this.clients.map((_, i) => i));

    const prefix = options.prefix ?? DEFAULTS.prefix;
    if (typeof prefix !== 'string') throw badOption('Redlock', 'prefix', 'a string', prefix);
    this.prefix = prefix;
    const namespace = options.namespace ?? '';
    if (typeof namespace !== 'string') throw badOption('Redlock', 'namespace', 'a string', namespace);
    this.namespace = namespace;
    this.base = (namespace ? `${namespace}:` : '') + prefix;
    const observerProblems = observerOptionProblems(options);
    if (observerProblems.length) throw badOptions('Redlock', observerProblems);
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
    this.clock = checkClock(options.clock);
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
      else this.emit({ type: 'not_available', kind: 'lease', target: leaseTarget(req.keys), waitedMs: Date.now() - started });
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
        this.emit?.({ type: 'not_available', kind: 'lease', target: leaseTarget(req.keys), waitedMs });
        throw leaseNotAcquired(describeKeys(req.keys), attempt, waitedMs, this.quorum, this.clients.length, nodes.map(describeNode).join('; '), {
          key: keyDetail(req.keys),
          attempts: attempt,
          nodes,
          waitedMs,
          quorum: this.quorum,
        });
      }
      await sleep(retryDelay(retry));
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
    checkFunction('Redlock.using', fn, 'the third argument');
    checkOptions('Redlock.using(key, ttlMs, fn, options?)', options);
    const req = this.request(key, ttlMs);
    const validity = ttlMs - this.drift(ttlMs);
    const threshold = options.automaticExtensionThresholdMs ?? this.automaticExtensionThresholdMs ?? Math.min(500, Math.floor(validity / 2));
    if (!(threshold > 0 && threshold < validity)) {
      checkNumber(
        'automaticExtensionThresholdMs',
        threshold,
        (v) => v > 0 && v < validity,
        `a positive number of ms below the lease validity (${validity} ms for a ttl of ${ttlMs} ms)`,
      );
    }
    // Checked before anything is sent: the transaction option and its installed DataSource.
    if (options.releaseAfterCommit !== undefined && typeof options.releaseAfterCommit !== 'boolean') {
      throw badOption('Redlock.using', 'the releaseAfterCommit option', 'true or false', options.releaseAfterCommit);
    }
    const tx = options === EMPTY ? undefined : checkLeaseTransaction(options, this.fencing?.dataSource);
    const lease = await this.acquireRequest(req, options);

    // With { transaction: true }, fn runs in a database transaction that commits only after
    // the lease was confirmed (extended) on a quorum; a lease lost before rolls it back.
    return holdLeaseWhile(
      lease,
      this.deadlines,
      ttlMs,
      threshold,
      tx ? (held) => runInLeaseTransaction(tx, held, ttlMs, fn) : fn,
      undefined,
      options.releaseAfterCommit === true,
    );
  }

  /**
   * A counting semaphore over these nodes: at most `permits` holders of `name` at once, each
   * permit a lease with a TTL, a fencing token and a signal (see semaphore.ts).
   *
   * ```ts
   * const exports = redlock.semaphore('report-export', 3);
   * await exports.using(30_000, async (permit) => render(permit.signal));
   * ```
   */
  semaphore(name: string, permits: number): RedisSemaphore {
    this.semaphoreHost ??= {
      driver: this,
      clock: this.clock,
      automaticExtensionThresholdMs: this.automaticExtensionThresholdMs,
      clients: this.clients,
      deadlines: this.deadlines,
      base: this.base,
      drift: (ttlMs) => this.drift(ttlMs),
      timeoutFor: (ttlMs) => this.timeoutFor(ttlMs),
      checkTtl: (ttlMs) => checkTtl(ttlMs, typeof ttlMs === 'number' ? this.drift(ttlMs) : 0),
      checkRetry: (options) => checkRetryOptions(options, this),
      emit: this.emit,
    };
    return new RedisSemaphore(this.semaphoreHost, name, permits);
  }

  // ---- LeaseDriver ----------------------------------------------------------------------

  /** @internal */
  async extendLease(lease: Lease, ttlMs: number): Promise<number> {
    checkTtl(ttlMs, this.drift(ttlMs));
    const timeoutMs = this.timeoutFor(ttlMs);
    const { extend, quorum } = lease.protocol ?? this.protocol;
    for (;;) {
      const start = lease._now();
      const wallStart = Date.now();
      const calls = await this.round<number>(this.allNodes, extend, lease.resources, [lease.value, String(ttlMs)], timeoutMs, (answered) => {
        return count(answered, isExtended) >= quorum || count(answered, isMismatch) > this.clients.length - quorum;
      });
      if (lease.state !== 'held') {
        throw lease._lost ?? leaseLost(describeKeys(lease.keys), 'was released while being extended', { key: keyDetail(lease.keys) });
      }
      const extended = count(calls, isExtended);
      const mismatched = count(calls, isMismatch);
      if (extended >= quorum) {
        const validity = ttlMs - this.drift(ttlMs);
        const expiresAt = wallStart + validity;
        lease._extended(expiresAt, start + validity, ttlMs);
        for (const c of calls) if (isExtended(c)) lease._noteHeld(c.node);
        return expiresAt;
      }
      const left = lease._validForMs;
      const definitelyLost = mismatched > this.clients.length - quorum;
      if (definitelyLost || left <= 0) {
        const why = definitelyLost
          ? `the key is gone or belongs to another lease on ${mismatched} of ${this.clients.length} nodes`
          : `a quorum could not be reached before it expired (${calls.map((c) => `node ${c.node}: ${c.outcome === 'ok' ? 'extended' : c.outcome}`).join('; ')})`;
        const error = leaseLost(describeKeys(lease.keys), `lost: ${why}`, {
          key: keyDetail(lease.keys),
          fencingToken: lease.fencingToken,
          expiresAt: lease.expiresAt,
          nodes: calls.map((c) => ({ node: c.node, result: c.outcome === 'ok' ? (Number(c.reply) === 1 ? 'extended' : 'lost') : c.outcome })),
        });
        this.emit?.({ type: 'lost', kind: 'lease', target: leaseTarget(lease.keys), heldMs: Date.now() - lease.acquiredAt });
        throw lease._markLost(error);
      }
      // Some nodes unreachable but the lease is still valid: try again shortly.
      await sleep(Math.max(1, Math.min(this.retryDelayMs, Math.floor(left / 2))));
    }
  }

  /** @internal Not an async function: a release allocates no suspended frame (nor a promise derived from its round's). */
  releaseLease(lease: Lease): Promise<boolean> {
    try {
      const protocol = lease.protocol ?? this.protocol;
      const argv = releaseArgv(protocol.release, lease.resources, lease.value);
      // Written first (what follows runs while the nodes answer). Resolves once a quorum
      // confirms; the other nodes' deletes go on (each client keeps its commands in order, so a
      // following acquire on that node runs after the delete).
      const issued = issue(this.clients, this.allNodes, protocol.release, argv);
      noteReleaseSent(lease, this.allNodes, issued);
      const quorum = protocol.quorum;
      const checked = protocol.releaseChecksValidity === true;
      // read after the release was written: still valid now means it was valid when sent
      const valid = !checked || lease._validForMs > 0;
      const keys = lease.resources.length;
      // (with every node as quorum, only every answer decides)
      const decided = quorum < this.clients.length ? (answered: Array<NodeCall<number>>) => countHeld(answered, keys) >= quorum : undefined;
      return settleIssued(
        this.clients,
        this.deadlines,
        this.allNodes,
        protocol.release,
        argv,
        issued,
        this.timeoutFor(lease.ttlMs),
        decided,
        new ReleaseTally(lease, valid, quorum, this.emit),
        checked ? performanceReading(this.clock, lease._lastReading) : undefined,
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** @internal */
  cleanupLease(lease: Lease): void {
    const release = (lease.protocol ?? this.protocol).release;
    const argv = releaseArgv(release, lease.resources, lease.value);
    const issued = issue(this.clients, this.allNodes, release, argv);
    noteReleaseSent(lease, this.allNodes, issued);
    void settleIssued(this.clients, this.deadlines, this.allNodes, release, argv, issued, this.timeoutFor(lease.ttlMs), undefined, IGNORE_ANSWERS);
  }

  // ---- internals -----------------------------------------------------------------------

  private request(key: LockKeys, ttlMs: number): AcquireRequest {
    assertClientsUsable(this.clients);
    checkTtl(ttlMs, this.drift(ttlMs));
    return lockRequest(this.base, key, ttlMs);
  }

  private drift(ttlMs: number): number {
    return driftOf(ttlMs, this.driftFactor);
  }

  private timeoutFor(ttlMs: number): number {
    return this.nodeTimeoutMs ?? Math.min(1000, Math.max(50, Math.floor(ttlMs / 10)));
  }

  private acquired(lease: Lease, started: number): void {
    this.emit?.({ type: 'acquired', kind: 'lease', target: leaseTarget(lease.keys), waitedMs: Date.now() - started });
  }

  /** One Redlock attempt; see the file comment. */
  private async attempt(req: AcquireRequest): Promise<{ lease: Lease | null; nodes: NodeResult[] }> {
    const { resources, ttlMs } = req;
    const value = leaseValue();
    const timeoutMs = this.timeoutFor(ttlMs);
    const start = this.clock();
    const wallStart = Date.now();
    const plain = this.fencing !== undefined;
    let lease: Lease | null = null;
    let settled = false;
    // A grant that arrives after the attempt was decided (or timed out) is undone, unless it
    // belongs to a lease that is live (one more node it is held on) or whose release follows it
    // on that node (Lease._lateGrant).
    const lateGrants: number[] = [];
    const isGrant = plain ? isZeroGrant : isTokenGrant;
    const onLate = (call: NodeCall<number>): void => {
      if (!isGrant(call)) return;
      if (!plain) this.see(BigInt(call.reply));
      if (!settled) lateGrants.push(call.node);
      else if (!lease || lease._lateGrant(call)) void this.releaseOn([call.node], resources, value, timeoutMs);
    };
    // Decided early once a quorum granted (and, with Redis counters, a quorum answered the same
    // highest token, so no bump is needed); a refusal waits for every node's answer (the error
    // lists them all).
    const calls = plain
      ? await this.round<number>(this.allNodes, ACQUIRE_PLAIN, resources, [value, String(ttlMs)], timeoutMs, this.plainDecided, onLate)
      : await this.round<number>(
          this.allNodes,
          ACQUIRE,
          [req.fenceKey, ...resources],
          [value, String(ttlMs), this.seenText],
          timeoutMs,
          this.tokenDecided,
          onLate,
        );

    const { granted, highest } = plain ? { granted: calls.filter(isZeroGrant).map((c) => ({ node: c.node, token: 0n })), highest: 0n } : tokenGrants(calls);

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
        token = highest;
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

    const validity = ttlMs - this.drift(ttlMs);
    if (ok && stillValid(start, validity, this.clock())) {
      const shape = { keys: req.keys, resources, fenceKey: req.fenceKey, clock: this.clock };
      lease = new Lease(this, shape, value, token, ttlMs, wallStart, wallStart + validity, start + validity);
      for (const g of granted) lease._noteHeld(g.node);
      for (const node of lateGrants) lease._noteHeld(node);
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

  private see(token: bigint): void {
    if (token > this.seen) {
      this.seen = token;
      this.seenText = token.toString();
    }
  }

  /** Undoes this Redlock's own grants of `value` on `nodes` (RELEASE). */
  private releaseOn(nodes: readonly number[], resources: readonly string[], value: string, timeoutMs: number): Promise<Array<NodeCall<number>>> {
    return sendRound<number>(this.clients, this.deadlines, nodes, RELEASE, releaseArgv(RELEASE, resources, value), timeoutMs);
  }

  private round<T>(
    nodes: readonly number[],
    script: NodeCommand,
    keys: readonly string[],
    args: string[],
    timeoutMs: number,
    decided?: (answered: Array<NodeCall<T>>) => boolean,
    onLate?: (call: NodeCall<T>) => void,
  ): Promise<Array<NodeCall<T>>> {
    return runRound(this.clients, this.deadlines, nodes, script, keys, args, timeoutMs, decided, onLate);
  }

  private address(node: number): string {
    return nodeAddress(this.clients[node], node);
  }
}

// ---- helpers ---------------------------------------------------------------------------------

/** A release's arguments as sent, in one array (one key, the usual case, without a loop). */
function releaseArgv(script: NodeCommand, resources: readonly string[], value: string): Array<string | number> {
  return resources.length === 1
    ? 'sha' in script
      ? [script.sha, 1, resources[0], value]
      : [resources[0], value]
    : 'sha' in script
      ? [script.sha, resources.length, ...resources, value]
      : [...resources, value];
}

/** Records on the lease which of `nodes` a release of it was written to (`issued`). */
function noteReleaseSent(lease: Lease, nodes: readonly number[], issued: Issued): void {
  for (let i = 0; i < issued.length; i++) if (typeof issued[i] !== 'string') lease._noteReleaseSent(nodes[i]);
}

/** What a release's round resolves with (its listener): held when a quorum deleted the lease and it was still valid. */
class ReleaseTally implements RoundListener<number, boolean> {
  constructor(
    private readonly lease: Lease,
    private readonly valid: boolean,
    private readonly quorum: number,
    private readonly emit: ((event: LockEvent) => void) | null | undefined,
  ) {}

  settled(answers: Array<NodeCall<number>>): boolean {
    const lease = this.lease;
    this.emit?.({ type: 'released', kind: 'lease', target: leaseTarget(lease.keys), heldMs: Date.now() - lease.acquiredAt });
    if (!this.valid) return false;
    const held = countHeld(answers, lease.resources.length);
    if (held >= this.quorum) return true;
    // A node that did not answer (down, timed out, failing) but granted the lease or its last
    // extension still holds it while the lease is valid: a node that answers "not held" is
    // evidence of a loss, one that cannot answer is not.
    let silent = 0;
    for (const c of answers) if (c.outcome !== 'ok' && lease._heldOn(c.node)) silent++;
    return held + silent >= this.quorum && lease._validForMs > 0;
  }

  late(): void {
    // the other nodes' deletes need nothing more
  }
}

/** How many nodes answered a release that they held the lease (deleted every one of its `keys`). */
function countHeld(calls: ReadonlyArray<NodeCall<number>>, keys: number): number {
  let n = 0;
  for (const c of calls) if (c.outcome === 'ok' && Number(c.reply) === keys) n++;
  return n;
}

function describeNode(n: NodeResult): string {
  const what =
    n.result === 'granted'
      ? 'granted'
      : n.result === 'locked'
        ? `held by another lease${n.lockedKey !== undefined ? ` (${JSON.stringify(n.lockedKey)})` : ''}`
        : `${n.result}: ${n.error}`;
  return `node ${n.node} ${n.address} ${what}`;
}
