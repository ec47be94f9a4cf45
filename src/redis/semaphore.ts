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
 * Each node answers t = max(counter, seen) + 1 and moves its counter to t: this permit owns t
 * there (the counter passes each value once). The permit's token T is the largest answer; it
 * counts only if `quorum` nodes own T (those that answered T, plus lagging ones that accept a
 * claim of T while their counter is below it, recording this permit as its owner).
 * Two permits never get the same token: their quorums (each ≥ a majority) share a node, and a
 * node's counter passes each value once, with one owner. A permit granted after another was
 * handed out gets a larger token: the earlier one left counter ≥ T on a quorum, which meets the
 * later one's quorum. Permits acquired at the same time get distinct tokens in no promised order.
 *
 * ## Release
 * A plain `ZREM holders value` on every node (the value is the permit's own, so it removes
 * nothing else). `release()` is true when a quorum removed it and the permit's validity
 * (monotonic clock) had not run out when the release was sent: ZREM cannot tell an expired
 * holder that no acquisition swept yet from a live one, the permit's own validity can. A node
 * that granted the permit (or its last extension) and does not answer counts as removing it
 * while the permit is valid, as for a Redlock lease (redlock.ts, ReleaseTally).
 * Uncontended, acquire + release cost what redis-semaphore's do: one EVALSHA and one ZREM per
 * node (the acquire script reads the node's clock and draws the token instead of sweeping and
 * setting the set's expiry: the same number of calls on the node).
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
import { performanceReading, stillValid, type Clock } from './clock';
import type { Deadlines } from './deadlines';
import { holdLeaseWhile } from './hold-lease';
import { Lease, type LeaseDriver, type LeaseShape } from './lease';
import { leaseValue } from './lease-value';
import { isTokenGrant, permitQuorum, sameHighestToken, type NodeResult } from './quorum';
import { retryDelay, sleep, type AcquireOptions } from './redlock-options';
import { count, issue, nodeAddress, runRound, sendRound, settleIssued, type NodeCall, type RoundDecider, type RoundListener } from './rounds';
import { checkPermits, checkSemaphoreName } from '../locks/semaphore-options';
import { SEM_ACQUIRE, SEM_CLAIM, SEM_EXTEND, SEM_RELEASE } from './semaphore-scripts';

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

/** A TTL as sent, the validity it gives (ttl − drift) and the node timeout of its rounds. */
interface TtlFigures {
  ms: number;
  text: string;
  validity: number;
  timeoutMs: number;
}

/**
 * One acquisition attempt: what deciding it, and the answers that come after, need. It is the
 * listener of its round (rounds.ts): the round hands it the answers, and each late one, without
 * a closure or a derived promise per attempt.
 */
class Attempt implements RoundListener<number, RedisPermit | null> {
  /**
   * The wall clock when the attempt started, for `expiresAt` (display; validity is measured on
   * `clock` from `start`): read as the attempt is set up, after its commands were written, which
   * is later than `start` by the microseconds of writing them (within the drift allowance's 2 ms).
   */
  readonly wallStart = Date.now();
  /** Decided: a grant answered from now on is undone at once unless `permit` was handed out. */
  done = false;
  permit: RedisPermit | null = null;
  /** Grants answered after the round resolved, before the attempt was decided. */
  lateGrants: number[] | undefined = undefined;

  constructor(
    readonly semaphore: RedisSemaphore,
    /** The permit's value (what the acquisition sent). */
    readonly value: string,
    readonly ttlMs: number,
    readonly ttl: TtlFigures,
    /** When it started (`clock` reading, taken before its commands were written). */
    readonly start: number,
    /** Where the answers go when the attempt gets no permit (`acquire`'s error). */
    readonly refusal: Refusal | undefined,
  ) {}

  settled(calls: Array<NodeCall<number>>): RedisPermit | null | Promise<RedisPermit | null> {
    if (this.refusal) this.refusal.calls = calls;
    return this.semaphore._decide(this, calls);
  }

  late(call: NodeCall<number>): void {
    this.semaphore._late(this, call);
  }
}

/** Where an attempt that got no permit leaves what each node answered. */
interface Refusal {
  calls: ReadonlyArray<NodeCall<number>>;
}

/** A permit of a Redis semaphore: a lease on the semaphore's holder set (`release`, `extend`, `fencingToken`, `signal`, `expiresAt`). */
export type RedisPermit = Lease;

/** The highest token a Redlock has seen for one semaphore name, and as sent (to nodes that lost their data). */
interface SeenToken {
  /** A number: tokens stay below 2^53 (see semaphore-scripts.ts). */
  token: number;
  text: string;
}

/** Per Redlock, the highest token seen per semaphore name (one entry per name, shared by its semaphores, updated in place). */
const seenTokens = new WeakMap<SemaphoreHost, Map<string, SeenToken>>();

export class RedisSemaphore {
  readonly name: string;
  readonly permits: number;
  /** On how many nodes a permit must be granted (see the file comment). */
  readonly quorum: number;
  private readonly holders: string;
  private readonly counter: string;
  /** The claim script's keys: the counter and who last claimed a token there. */
  private readonly claimKeys: readonly string[];
  /** What every permit is on and how it is kept (its keys, resources, fencing key, clock and protocol). */
  private readonly shape: LeaseShape;
  private readonly allNodes: readonly number[];
  private readonly seen: SeenToken;
  /** The permits as sent (made once). */
  private readonly permitsText: string;
  /** The KEYS of the release and extension (the holder set). */
  private readonly holdersKeys: readonly string[];
  /** A permit's `keys` and `resources` (frozen, shared by every permit of this semaphore). */
  private readonly permitKeys: readonly string[];
  /** What a TTL comes to, for the last TTL asked for (callers use one TTL): its text, validity and node timeout. */
  private ttl: TtlFigures = { ms: NaN, text: '', validity: 0, timeoutMs: 0 };
  /**
   * When an acquisition round is decided early: a quorum of nodes answered the same highest
   * token. None when the quorum is every node (only every answer decides).
   */
  private readonly decided: RoundDecider<number> | undefined;

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
    this.counter = `${host.base}{semaphore-token}:${name}`;
    this.claimKeys = Object.freeze([this.counter, `${host.base}{semaphore-claim}:${name}`]);
    this.holdersKeys = Object.freeze([this.holders]);
    this.permitKeys = Object.freeze([name]);
    this.shape = {
      keys: this.permitKeys,
      resources: this.holdersKeys,
      fenceKey: this.counter,
      clock: host.clock,
      protocol: { extend: SEM_EXTEND, release: SEM_RELEASE, quorum: this.quorum, releaseChecksValidity: true },
    };
    this.permitsText = String(permits);
    this.allNodes = host.clients.map((_, i) => i);
    const quorum = this.quorum;
    this.decided = quorum < n ? (answered) => sameHighestToken(answered, quorum) : undefined;
    let byName = seenTokens.get(host);
    if (!byName) seenTokens.set(host, (byName = new Map()));
    let seen = byName.get(name);
    if (!seen) byName.set(name, (seen = { token: 0, text: '0' }));
    this.seen = seen;
  }

  /** One attempt: a permit, or `null` when no quorum of nodes had a free place (or answered). */
  tryAcquire(ttlMs: number): Promise<RedisPermit | null> {
    // not an async function: the uncontended path allocates no suspended frame for it
    let ttl: TtlFigures;
    try {
      ttl = this.ttlFigures(ttlMs);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!this.host.emit) return this.attempt(ttlMs, ttl, undefined);
    const started = Date.now();
    return this.attempt(ttlMs, ttl, undefined).then((permit) => {
      this.report(permit, started);
      return permit;
    });
  }

  /** Acquires with the Redlock's retries (or `options`); throws `LockNotAvailableError` naming every node's answer. */
  async acquire(ttlMs: number, options: AcquireOptions = {}): Promise<RedisPermit> {
    checkOptions('semaphore.acquire(ttlMs, options?)', options);
    this.ttlFigures(ttlMs);
    return this.acquireWith(ttlMs, this.host.checkRetry(options));
  }

  /** `acquire` with its arguments checked. */
  private async acquireWith(ttlMs: number, retry: Required<AcquireOptions>): Promise<RedisPermit> {
    const started = Date.now();
    const refusal: Refusal = { calls: [] };
    for (let attempt = 1; ; attempt++) {
      const permit = await this.attempt(ttlMs, this.ttlFigures(ttlMs), refusal);
      if (permit) {
        this.report(permit, started);
        return permit;
      }
      if (attempt > retry.retryCount) {
        const waitedMs = Date.now() - started;
        this.report(null, started);
        const nodes = this.nodeResults(refusal.calls);
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
    this.ttlFigures(ttlMs);
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
    const permit = await this.acquireWith(ttlMs, this.host.checkRetry(options));
    return holdLeaseWhile(permit, this.host.deadlines, ttlMs, threshold, fn, 'Redis semaphore permit of');
  }

  private report(permit: RedisPermit | null, started: number): void {
    const emit = this.host.emit;
    if (!emit) return;
    const target = `semaphore ${JSON.stringify(this.name)}`;
    emit({ type: permit ? 'acquired' : 'not_available', kind: 'lease', target, waitedMs: Date.now() - started });
  }

  /**
   * `ttlMs` checked (LockConfigError when it is not a valid TTL), as sent, the validity it gives
   * and the node timeout of its rounds: worked out once per TTL (a TTL kept here was checked).
   */
  private ttlFigures(ttlMs: number): TtlFigures {
    if (this.ttl.ms !== ttlMs) {
      const { host } = this;
      host.checkTtl(ttlMs);
      this.ttl = { ms: ttlMs, text: String(ttlMs), validity: ttlMs - host.drift(ttlMs), timeoutMs: host.timeoutFor(ttlMs) };
    }
    return this.ttl;
  }

  private see(token: number): void {
    const seen = this.seen;
    if (token > seen.token) {
      seen.token = token;
      seen.text = token.toString();
    }
  }

  /** Sends `ZREM holders value` to `nodes` (undoes this attempt's places there). */
  private releaseOn(nodes: readonly number[], value: string, timeoutMs: number): Promise<Array<NodeCall<number>>> {
    return sendRound<number>(this.host.clients, this.host.deadlines, nodes, SEM_RELEASE, [this.holders, value], timeoutMs);
  }

  /**
   * One attempt (see the file comment): the permit, or null when a quorum of nodes had no free
   * place or did not answer (what each node answered then goes to `refusal`). Not an async
   * function: the uncontended path (every grant at one token) decides as the round resolves.
   */
  private attempt(ttlMs: number, ttl: TtlFigures, refusal: Refusal | undefined): Promise<RedisPermit | null> {
    const { host } = this;
    const value = leaseValue();
    const start = host.clock();
    const argv = [SEM_ACQUIRE.sha, 2, this.holders, this.counter, value, ttl.text, this.permitsText, this.seen.text];
    // written first: what follows runs while the nodes answer
    const issued = issue(host.clients, this.allNodes, SEM_ACQUIRE, argv);
    return settleIssued<number, RedisPermit | null>(
      host.clients,
      host.deadlines,
      this.allNodes,
      SEM_ACQUIRE,
      argv,
      issued,
      ttl.timeoutMs,
      this.decided,
      new Attempt(this, value, ttlMs, ttl, start, refusal),
      performanceReading(host.clock, start),
    );
  }

  /**
   * A grant that arrives after the attempt was decided is undone unless the permit was handed
   * out and is held (then it is one of the nodes the permit is held on), or its release follows
   * that grant on the node (`Lease._lateGrant`).
   * @internal (Attempt.late)
   */
  _late(state: Attempt, call: NodeCall<number>): void {
    if (!isTokenGrant(call)) return;
    this.see(Number(call.reply));
    if (!state.done) (state.lateGrants ??= []).push(call.node);
    else if (!state.permit || state.permit._lateGrant(call)) void this.releaseOn([call.node], state.value, state.ttl.timeoutMs);
  }

  /** @internal (Attempt.settled) The token grants of the round: a permit when a quorum owns the highest token (raising lagging nodes first). */
  _decide(state: Attempt, calls: Array<NodeCall<number>>): RedisPermit | null | Promise<RedisPermit | null> {
    const quorum = this.quorum;
    // The grants, and how many answered the highest token (as numbers: tokens stay below 2^53).
    let grants = 0;
    let highest = 0;
    let atHighest = 0;
    for (const c of calls) {
      if (!isTokenGrant(c)) continue;
      grants++;
      const t = Number(c.reply);
      if (t > highest) {
        highest = t;
        atHighest = 1;
      } else if (t === highest) atHighest++;
    }
    if (grants < quorum) return this.settle(state, calls, false, highest, grants);
    if (atHighest < quorum) return this.claim(state, calls, highest, atHighest, grants);
    this.see(highest);
    return this.settle(state, calls, true, highest, grants);
  }

  /** Claims the highest token on the granting nodes that answered a lower one (SEM_CLAIM), then settles. */
  private async claim(state: Attempt, calls: Array<NodeCall<number>>, highest: number, atHighest: number, grants: number): Promise<RedisPermit | null> {
    const lagging = calls.filter((c) => isTokenGrant(c) && Number(c.reply) < highest).map((c) => c.node);
    const { host } = this;
    const claims = await runRound<number>(
      host.clients,
      host.deadlines,
      lagging,
      SEM_CLAIM,
      this.claimKeys,
      [String(highest), state.value],
      state.ttl.timeoutMs,
    );
    const owned = atHighest + count(claims, (c) => c.outcome === 'ok' && Number(c.reply) === 1);
    this.see(highest);
    return this.settle(state, calls, owned >= this.quorum, highest, grants);
  }

  /**
   * The permit when a quorum owns its token and its validity has not run out since the attempt
   * started; otherwise null, once the places granted are undone (and those granted late).
   */
  private settle(state: Attempt, calls: Array<NodeCall<number>>, owned: boolean, token: number, grants: number): RedisPermit | null | Promise<null> {
    const { clock } = this.host;
    const now = clock();
    const { ttl, start, wallStart } = state;
    if (owned && stillValid(start, ttl.validity, now)) {
      state.done = true;
      const permit = new Lease(
        this.host.driver,
        this.shape,
        state.value,
        BigInt(token),
        state.ttlMs,
        wallStart,
        wallStart + ttl.validity,
        start + ttl.validity,
        now,
      );
      // where it holds a place (what release counts for a node that cannot answer then)
      for (const c of calls) if (isTokenGrant(c)) permit._noteHeld(c.node);
      if (state.lateGrants) for (const node of state.lateGrants) permit._noteHeld(node);
      return (state.permit = permit);
    }
    return this.refuse(state, calls, grants);
  }

  /** No permit: the places granted are undone, then those granted late (a method of its own, so granting allocates no closure context). */
  private refuse(state: Attempt, calls: Array<NodeCall<number>>, grants: number): null | Promise<null> {
    const timeoutMs = state.ttl.timeoutMs;
    const done = (): null => {
      state.done = true;
      if (state.lateGrants) void this.releaseOn(state.lateGrants, state.value, timeoutMs);
      return null;
    };
    if (grants === 0) return done();
    return this.releaseOn(
      calls.filter(isTokenGrant).map((g) => g.node),
      state.value,
      timeoutMs,
    ).then(done);
  }

  /** What each node answered to an attempt that got no permit (for `LockNotAvailableError`). */
  private nodeResults(calls: ReadonlyArray<NodeCall<number>>): NodeResult[] {
    const clients = this.host.clients;
    return calls.map((c): NodeResult => {
      const address = nodeAddress(clients[c.node], c.node);
      if (c.outcome !== 'ok') return { node: c.node, address, result: c.outcome, error: c.error };
      if (Number(c.reply) > 0) return { node: c.node, address, result: 'granted', token: String(c.reply) };
      return { node: c.node, address, result: 'locked', error: `all ${this.permits} permits held` };
    });
  }
}

function describeNode(n: NodeResult): string {
  const what = n.result === 'granted' ? 'granted' : n.result === 'locked' ? 'full' : `${n.result}: ${n.error}`;
  return `node ${n.node} ${n.address} ${what}`;
}
