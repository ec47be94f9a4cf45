/**
 * A counting semaphore over the Redlock's nodes: `redlock.semaphore(name, permits)`. At most
 * `permits` permits of `name` are held at once; each permit is a lease (the `Lease` class,
 * with this semaphore's scripts and quorum) with a TTL, `extend`, `release`, `signal` and a
 * fencing token.
 *
 * Per node (semaphore-scripts.ts): a sorted set of holders with their expiry, and a fencing
 * counter. A permit is granted when `quorum` nodes admitted it (fewer than `permits` unexpired
 * holders there) and its validity (ttl − elapsed − drift, monotonic clock) is still positive.
 *
 * ## Why the quorum is not a simple majority
 * With n nodes each admitting at most N holders, N + 1 permits each granted on q nodes need
 * (N + 1)·q places; if (N + 1)·q > n·N some node would hold N + 1, which it refuses. So
 * q = ⌊n·N / (N + 1)⌋ + 1 guarantees "at most N". A majority is enough only for N = 1: with
 * 3 nodes and N = 3, four permits granted on {a,b}, {a,c}, {b,c}, {a,b} fit (3, 3, 2 holders).
 * So: 1 node → 1; 3 nodes → 2 for N = 1 and 3 (every node) for N ≥ 2; 5 nodes → 3, 4, 4, 4, 5…
 * A semaphore on 3 nodes with N ≥ 2 therefore stops granting while any node is down.
 *
 * ## Fencing tokens
 * Each node answers t = max(counter, seen) + 1 and records this permit as the owner of t. The
 * permit's token T is the largest answer; it counts only if `quorum` nodes own T (those that
 * answered T, plus lagging ones that accept a claim of T while their counter is below it).
 * Two permits never get the same token: their quorums (each ≥ a majority) share a node, and a
 * node's counter passes each value once, with one owner. A permit granted after another was
 * handed out gets a larger token: the earlier one left counter ≥ T on a quorum, which meets the
 * later one's quorum. Permits acquired at the same time get distinct tokens in no promised order.
 *
 * ## Arrival order
 * Not guaranteed: waiters poll (`retryDelayMs` ± `retryJitterMs`), so a newcomer can take a
 * permit that was freed while an older waiter slept.
 */
import type { Redis } from './redis-client';
import { checkFunction, checkOptions } from '../arguments';
import { badOption } from '../faults/options';
import { redisPermitNotAcquired } from '../faults/semaphores';
import type { LockEvent } from '../observe/events';
import { stillValid, type Clock } from './clock';
import type { Deadlines } from './deadlines';
import { holdLeaseWhile } from './hold-lease';
import { Lease, type LeaseDriver, type LeaseProtocol } from './lease';
import { leaseValue } from './lease-value';
import { isTokenGrant, permitQuorum, sameHighestToken, tokenGrants, type NodeResult } from './quorum';
import { retryDelay, sleep, type AcquireOptions } from './redlock-options';
import { count, nodeAddress, runRound, type NodeCall } from './rounds';
import { checkPermits, checkSemaphoreName } from '../locks/semaphore-options';
import { SEM_ACQUIRE, SEM_CLAIM, SEM_HOLD } from './semaphore-scripts';

/** What a semaphore shares with its Redlock (made by `Redlock.semaphore`). */
export interface SemaphoreHost {
  /** Extends and releases the permits (the Redlock). */
  readonly driver: LeaseDriver;
  readonly clock: Clock;
  /** The Redlock's `automaticExtensionThresholdMs` option. */
  readonly automaticExtensionThresholdMs: number | undefined;
  readonly clients: readonly Redis[];
  readonly deadlines: Deadlines;
  /** `namespace:` + prefix. */
  readonly base: string;
  drift(ttlMs: number): number;
  timeoutFor(ttlMs: number): number;
  checkTtl(ttlMs: unknown): void;
  checkRetry(options: AcquireOptions): Required<AcquireOptions>;
  readonly emit: ((event: LockEvent) => void) | null;
}

export interface SemaphoreUsingOptions extends AcquireOptions {
  /** Extend the permit when this many ms of validity are left (default: the Redlock's, else min(500, validity/2)). */
  automaticExtensionThresholdMs?: number;
}

/** A permit of a Redis semaphore: a lease on the semaphore's holder set (`release`, `extend`, `fencingToken`, `signal`, `expiresAt`). */
export type RedisPermit = Lease;

/** The highest token each Redlock has seen per semaphore name (sent to nodes that lost their data). */
const seenTokens = new WeakMap<SemaphoreHost, Map<string, bigint>>();

export class RedisSemaphore {
  readonly name: string;
  readonly permits: number;
  /** On how many nodes a permit must be granted (see the file comment). */
  readonly quorum: number;
  private readonly holders: string;
  private readonly counter: string;
  private readonly protocol: LeaseProtocol;
  private readonly allNodes: readonly number[];
  private readonly seen: Map<string, bigint>;
  /** The KEYS of the acquire script and the permits as sent (made once). */
  private readonly acquireKeys: readonly string[];
  private readonly permitsText: string;
  /** The KEYS of the release script. */
  private readonly holdersKeys: readonly string[];
  /** A permit's `keys` and `resources` (frozen, shared by every permit of this semaphore). */
  private readonly permitKeys: readonly string[];
  /** What a TTL comes to, for the last TTL asked for (callers use one TTL): its text, validity and node timeout. */
  private ttl = { ms: NaN, text: '', validity: 0, timeoutMs: 0 };
  /** When an acquisition round is decided: a quorum of nodes answered the same highest token. */
  private readonly decided = (answered: Array<NodeCall<number>>): boolean => sameHighestToken(answered, this.quorum);

  constructor(
    private readonly host: SemaphoreHost,
    name: string,
    permits: number,
  ) {
    this.name = checkSemaphoreName(name, 'Redlock.semaphore(name, permits)');
    this.permits = checkPermits(permits, 'Redlock.semaphore(name, permits)', name);
    const n = host.clients.length;
    this.quorum = permitQuorum(n, permits);
    this.holders = `${host.base}{semaphore}:${name}`;
    this.counter = `${host.base}{semaphore-fence}:${name}`;
    this.protocol = { extend: SEM_HOLD, release: SEM_HOLD, quorum: this.quorum };
    this.acquireKeys = [this.holders, this.counter];
    this.holdersKeys = Object.freeze([this.holders]);
    this.permitKeys = Object.freeze([name]);
    this.permitsText = String(permits);
    this.allNodes = host.clients.map((_, i) => i);
    let seen = seenTokens.get(host);
    if (!seen) seenTokens.set(host, (seen = new Map()));
    this.seen = seen;
  }

  /** One attempt: a permit, or `null` when no quorum of nodes had a free place (or answered). */
  async tryAcquire(ttlMs: number): Promise<RedisPermit | null> {
    this.host.checkTtl(ttlMs);
    const started = this.host.emit ? Date.now() : 0;
    const { permit } = await this.attempt(ttlMs);
    this.report(permit, started);
    return permit;
  }

  /** Acquires with the Redlock's retries (or `options`); throws `LockNotAvailableError` naming every node's answer. */
  async acquire(ttlMs: number, options: AcquireOptions = {}): Promise<RedisPermit> {
    checkOptions('semaphore.acquire(ttlMs, options?)', options);
    this.host.checkTtl(ttlMs);
    const retry = this.host.checkRetry(options);
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      const { permit, nodes } = await this.attempt(ttlMs);
      if (permit) {
        this.report(permit, started);
        return permit;
      }
      if (attempt > retry.retryCount) {
        const waitedMs = Date.now() - started;
        this.report(null, started);
        const described = nodes.map(describeNode).join('; ');
        throw redisPermitNotAcquired(this.name, this.permits, attempt, waitedMs, this.quorum, this.host.clients.length, described, {
          key: this.name,
          permits: this.permits,
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
   * Acquires a permit (with `acquire`'s retries), runs `fn(permit)` as a lock scope, extends the
   * permit automatically and always releases it. A permit lost meanwhile aborts `permit.signal`
   * and makes `using` reject with `LockLostError` once `fn` settled (also when the release finds
   * the permit on no quorum, or its validity ran out during `fn`).
   */
  async using<T>(ttlMs: number, fn: (permit: RedisPermit) => Promise<T> | T, options: SemaphoreUsingOptions = {}): Promise<T> {
    checkFunction('semaphore.using', fn, 'the second argument');
    checkOptions('semaphore.using(ttlMs, fn, options?)', options);
    this.host.checkTtl(ttlMs);
    const validity = ttlMs - this.host.drift(ttlMs);
    const threshold = options.automaticExtensionThresholdMs ?? this.host.automaticExtensionThresholdMs ?? Math.min(500, Math.floor(validity / 2));
    if (typeof threshold !== 'number' || !(threshold > 0 && threshold < validity)) {
      throw badOption(
        'semaphore.using',
        'automaticExtensionThresholdMs',
        `a positive number of ms below the permit validity (${validity} ms for a ttl of ${ttlMs} ms)`,
        threshold,
      );
    }
    const { automaticExtensionThresholdMs: _ignored, ...acquireOptions } = options;
    const permit = await this.acquire(ttlMs, acquireOptions);
    return holdLeaseWhile(permit, ttlMs, threshold, fn, 'Redis semaphore permit of');
  }

  private report(permit: RedisPermit | null, started: number): void {
    const emit = this.host.emit;
    if (!emit) return;
    const target = `semaphore ${JSON.stringify(this.name)}`;
    emit({ type: permit ? 'acquired' : 'not_available', kind: 'lease', target, waitedMs: Date.now() - started });
  }

  /** `ttlMs` as sent, the validity it gives and the node timeout of its rounds (worked out once per TTL). */
  private ttlFigures(ttlMs: number): { ms: number; text: string; validity: number; timeoutMs: number } {
    if (this.ttl.ms !== ttlMs) {
      const { host } = this;
      this.ttl = { ms: ttlMs, text: String(ttlMs), validity: ttlMs - host.drift(ttlMs), timeoutMs: host.timeoutFor(ttlMs) };
    }
    return this.ttl;
  }

  private see(token: bigint): void {
    if (token > (this.seen.get(this.name) ?? 0n)) this.seen.set(this.name, token);
  }

  /** One attempt; see the file comment. */
  private async attempt(ttlMs: number): Promise<{ permit: RedisPermit | null; nodes: NodeResult[] }> {
    const { host, quorum } = this;
    const value = leaseValue();
    const { text: ttlText, validity, timeoutMs } = this.ttlFigures(ttlMs);
    const clock = host.clock;
    const start = clock();
    const wallStart = Date.now();
    let permit: RedisPermit | null = null;
    let settled = false;
    const lateGrants: number[] = [];
    const release = (nodes: readonly number[]) => runRound<number>(host.clients, host.deadlines, nodes, SEM_HOLD, this.holdersKeys, [value], timeoutMs);
    // A grant that arrives after the attempt was decided is undone unless the permit was
    // handed out (its release, sent later on the same client, runs after it).
    const onLate = (call: NodeCall<number>): void => {
      if (!isTokenGrant(call)) return;
      this.see(BigInt(call.reply));
      if (!settled) lateGrants.push(call.node);
      else if (!permit) void release([call.node]);
    };
    const highest = this.seen.get(this.name);
    const seen = highest === undefined ? '0' : highest.toString();
    const calls = await runRound<number>(
      host.clients,
      host.deadlines,
      this.allNodes,
      SEM_ACQUIRE,
      this.acquireKeys,
      [value, ttlText, this.permitsText, seen],
      timeoutMs,
      this.decided,
      onLate,
    );
    const { granted, highest: token } = tokenGrants(calls);
    let ok = false;
    if (granted.length >= quorum) {
      const lagging = granted.filter((g) => g.token < token).map((g) => g.node);
      let owned = granted.length - lagging.length;
      if (owned < quorum) {
        const claims = await runRound<number>(host.clients, host.deadlines, lagging, SEM_CLAIM, [this.counter], [token.toString(), value], timeoutMs);
        owned += count(claims, (c) => c.outcome === 'ok' && Number(c.reply) === 1);
      }
      ok = owned >= quorum;
      this.see(token);
    }
    if (ok && stillValid(start, validity, clock())) {
      permit = new Lease(host.driver, {
        keys: this.permitKeys,
        resources: this.holdersKeys,
        fenceKey: this.counter,
        value,
        fencingToken: token,
        ttlMs,
        acquiredAt: wallStart,
        expiresAt: wallStart + validity,
        validUntil: start + validity,
        clock,
        protocol: this.protocol,
      });
    } else if (granted.length > 0) {
      await release(granted.map((g) => g.node));
    }
    settled = true;
    if (!permit && lateGrants.length > 0) void release(lateGrants);
    if (permit) return { permit, nodes: [] };
    return {
      permit,
      nodes: calls.map((c): NodeResult => {
        const address = nodeAddress(host.clients[c.node], c.node);
        if (c.outcome !== 'ok') return { node: c.node, address, result: c.outcome, error: c.error };
        if (Number(c.reply) > 0) return { node: c.node, address, result: 'granted', token: String(c.reply) };
        return { node: c.node, address, result: 'locked', error: `all ${this.permits} permits held` };
      }),
    };
  }
}

function describeNode(n: NodeResult): string {
  const what = n.result === 'granted' ? 'granted' : n.result === 'locked' ? 'full' : `${n.result}: ${n.error}`;
  return `node ${n.node} ${n.address} ${what}`;
}
