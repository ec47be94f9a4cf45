import { performance } from 'perf_hooks';
import { expect } from 'chai';
import Redis from 'ioredis';
import { LockConfigError, LockLostError, LockNotAvailableError } from '../src/errors';
import { Redlock, type RedisPermit } from '../src/redis';
import { currentLockSignal } from '../src/context/lock-signal';
import { race } from '../src/testing';
import { RedisNodes, startRedisNodes, unavailable } from './support/redis-servers';
import { settled } from './support/settled';
import { rejection } from './support/rejection';
import { startSemaphoreHolder } from './support/semaphore-holder';
import { concurrencyMeter } from './support/concurrency-meter';
import { SEM_CLAIM } from '../src/redis/semaphore-scripts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Redis counting semaphores (redlock.semaphore)', function () {
  this.timeout(60_000);

  let nodes: RedisNodes;
  let clients: Redis[];
  const prefix = `ormlock-sem-test:${process.pid}-${Date.now().toString(36)}:`;
  let seq = 0;
  const name = (what: string) => `${what}:${++seq}`;
  /** Unexpired holders of a semaphore on each node. */
  const holdersOn = (sem: { name: string }, set: Redis[]) =>
    Promise.all(set.map(async (c) => c.zcount(`${prefix}{semaphore}:${sem.name}`, `(${await serverMs(c)}`, '+inf')));
  const serverMs = async (c: Redis) => {
    const [s, us] = await c.time();
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  };

  before(async function () {
    nodes = await startRedisNodes((reason) => unavailable(this, reason));
    clients = nodes.clients();
    await nodes.waitReady(clients);
  });

  after(async () => {
    await nodes?.close();
  });

  for (const size of [1, 3]) {
    describe(`${size} node(s), permits 3, 50 racing callers`, () => {
      const redlockOf = () => new Redlock(clients.slice(0, size), { prefix, retryCount: 2000, retryDelayMs: 5, retryJitterMs: 5 });

      /** Runs 50 bodies (each 30 ms) at once, with or without the semaphore; the most bodies seen at once. */
      async function run(locked: boolean) {
        const redlock = redlockOf();
        const sem = redlock.semaphore(name('race'), 3);
        const meter = concurrencyMeter();
        const grants: Array<{ token: bigint; attemptStart: number; handedOut: number }> = [];
        const body = () => meter.run(30);
        const results = await race(50, async () => {
          if (!locked) return body();
          // tryAcquire in a loop: the start of the successful attempt is known
          for (;;) {
            const attemptStart = performance.now();
            const permit = await sem.tryAcquire(5000);
            if (permit) {
              grants.push({ token: permit.fencingToken, attemptStart, handedOut: performance.now() });
              try {
                await body();
              } finally {
                expect(await permit.release()).to.equal(true);
              }
              return;
            }
            await sleep(5 + Math.random() * 10);
          }
        });
        for (const r of results) if (r.status === 'rejected') throw r.reason;
        return { sem, maxInside: meter.max, grants };
      }

      it('control: without the semaphore more than 3 bodies run at once', async () => {
        expect((await run(false)).maxInside).to.be.above(3);
      });

      it('at most 3 bodies at once; every permit released; tokens distinct and larger than every permit handed out before the attempt', async () => {
        const { sem, maxInside, grants } = await run(true);
        expect(maxInside).to.be.at.most(3);
        expect(maxInside, 'the semaphore lets 3 run together').to.equal(3);
        expect(grants).to.have.length(50);
        expect(new Set(grants.map((g) => g.token)).size, 'tokens are distinct').to.equal(50);
        for (const a of grants) {
          for (const b of grants) {
            if (b.attemptStart > a.handedOut) expect(b.token > a.token, `token ${b.token} after ${a.token}`).to.equal(true);
          }
        }
        const sorted = [...grants].sort((x, y) => x.handedOut - y.handedOut);
        expect(sorted[49].token > sorted[0].token).to.equal(true);
        expect(
          await settled(
            () => holdersOn(sem, clients.slice(0, size)),
            (n) => n.every((x) => x === 0),
          ),
        ).to.deep.equal(new Array(size).fill(0));
      });

      it('using(): at most 3 bodies at once, each under its permit signal', async () => {
        const redlock = redlockOf();
        const sem = redlock.semaphore(name('using'), 3);
        const meter = concurrencyMeter();
        const results = await race(50, () =>
          sem.using(5000, async (permit) => {
            expect(currentLockSignal()).to.not.equal(undefined);
            expect(permit.signal.aborted).to.equal(false);
            await meter.run(20);
            return permit.fencingToken;
          }),
        );
        for (const r of results) if (r.status === 'rejected') throw r.reason;
        expect(meter.max).to.be.within(1, 3);
        expect(
          await settled(
            () => holdersOn(sem, clients.slice(0, size)),
            (n) => n.every((x) => x === 0),
          ),
        ).to.deep.equal(new Array(size).fill(0));
      });
    });
  }

  describe('permits expire, extend and get lost', () => {
    it('a permit that is not extended expires with its TTL and frees its place', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('ttl'), 1);
      const first = await sem.tryAcquire(300);
      expect(first).to.not.equal(null);
      expect(await sem.tryAcquire(300)).to.equal(null);
      await sleep(350);
      const second = await sem.tryAcquire(300);
      expect(second).to.not.equal(null);
      expect(second!.fencingToken > first!.fencingToken).to.equal(true);
      expect(await first!.release(), 'the expired permit releases nothing').to.equal(false);
      expect(await second!.release()).to.equal(true);
    });

    it('extend() keeps the place past the first TTL', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('extend'), 1);
      const permit = (await sem.tryAcquire(300))!;
      await sleep(150);
      await permit.extend(1000);
      await sleep(300);
      expect(await sem.tryAcquire(300)).to.equal(null);
      expect(await permit.release()).to.equal(true);
    });

    it('only a live holder is extended; a released or expired one is neither extended nor brought back', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('hold'), 1);
      const live = (await sem.tryAcquire(300))!;
      await live.extend(1000);
      expect(await holdersOn(sem, clients), 'extended on every node').to.deep.equal([1, 1, 1]);
      expect(await live.release()).to.equal(true);
      expect(await holdersOn(sem, clients), 'released on every node').to.deep.equal([0, 0, 0]);
      expect(await rejection(live.extend(1000))).to.be.instanceOf(LockLostError);
      const expired = (await sem.tryAcquire(200))!;
      await sleep(260);
      expect(await rejection(expired.extend(1000)), 'an expired holder is not extended').to.be.instanceOf(LockLostError);
      expect(await holdersOn(sem, clients), 'and not brought back').to.deep.equal([0, 0, 0]);
      const next = await sem.tryAcquire(1000);
      expect(next, 'its place is free').to.not.equal(null);
      expect(await next!.release()).to.equal(true);
    });

    it('release() is a plain ZREM: true for a live permit; false for one whose validity ran out, also while its holder was not swept yet', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('zrem'), 3);
      const live = (await sem.tryAcquire(5000))!;
      const expired = (await sem.tryAcquire(200))!;
      await sleep(260);
      // a set that is not full is not swept: the expired holder is still there on every node
      const raw = await Promise.all(clients.map((c) => c.zscore(`${prefix}{semaphore}:${sem.name}`, expired.value)));
      expect(raw.every((score) => score !== null)).to.equal(true);
      expect(await expired.release(), 'the permit had expired').to.equal(false);
      const after = await Promise.all(clients.map((c) => c.zscore(`${prefix}{semaphore}:${sem.name}`, expired.value)));
      expect(after, 'removed all the same').to.deep.equal([null, null, null]);
      expect(await live.release()).to.equal(true);
      expect(await live.release(), 'a second release returns the first answer').to.equal(true);
      expect(await holdersOn(sem, clients)).to.deep.equal([0, 0, 0]);
    });

    it('each TTL gives its own validity and expiry (the figures of a TTL are kept per TTL), and permits name the semaphore', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('ttls'), 3);
      const short = (await sem.tryAcquire(400))!;
      const long = (await sem.tryAcquire(20_000))!;
      const again = (await sem.tryAcquire(400))!;
      expect(short.remainingMs).to.be.within(1, 400);
      expect(long.remainingMs).to.be.within(10_000, 20_000);
      expect(again.remainingMs).to.be.within(1, 400);
      expect([short.ttlMs, long.ttlMs, again.ttlMs]).to.deep.equal([400, 20_000, 400]);
      const scores = await clients[0].zrange(`${prefix}{semaphore}:${sem.name}`, 0, -1, 'WITHSCORES');
      const expiry = (p: RedisPermit) => Number(scores[scores.indexOf(p.value) + 1]);
      expect(expiry(long) - expiry(short), 'the long permit expires ~19.6 s after the short one').to.be.within(19_000, 20_000);
      for (const p of [short, long, again]) {
        expect(p.keys).to.deep.equal([sem.name]);
        expect(Object.isFrozen(p.keys) && Object.isFrozen(p.resources)).to.equal(true);
        expect(await p.release()).to.equal(true);
      }
    });

    it('using() keeps a 300 ms permit through 1 s of work', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('using-long'), 1);
      const result = await sem.using(300, async () => {
        await sleep(1000);
        return 'done';
      });
      expect(result).to.equal('done');
    });

    it('a permit removed from the nodes mid-body aborts the signal and using() rejects with LockLostError', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('lost'), 2);
      let aborted = false;
      const err = await rejection(
        sem.using(500, async (permit) => {
          setTimeout(() => void Promise.all(clients.map((c) => c.zrem(permit.resources[0], permit.value))), 50);
          await new Promise<void>((resolve) => {
            permit.signal.addEventListener('abort', () => resolve());
            setTimeout(resolve, 2000);
          });
          aborted = permit.signal.aborted;
        }),
      );
      expect(aborted).to.equal(true);
      expect(err).to.be.instanceOf(LockLostError);
    });

    it('a release that finds the permit on no quorum rejects using() with LockLostError', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('lost-release'), 2);
      const err = await rejection(
        sem.using(
          5000,
          async (permit: RedisPermit) => {
            await Promise.all(clients.map((c) => c.zrem(permit.resources[0], permit.value)));
          },
          { automaticExtensionThresholdMs: 1 },
        ),
      );
      expect(err).to.be.instanceOf(LockLostError);
      expect(err.message).to.match(/not found on a quorum/);
    });

    it('a node that granted the permit and is down at release still holds its place while the permit is valid (quorum: every node of 3)', async function () {
      this.timeout(20_000);
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('silent-node'), 3);
      const permit = (await sem.tryAcquire(5000))!;
      expect(permit).to.not.equal(null);
      await nodes.stop(2);
      try {
        while (clients[2].status === 'ready') await sleep(10);
        expect(await permit.release(), 'nodes 0 and 1 removed it; node 2 granted it and cannot answer').to.equal(true);
        const other = await sem.tryAcquire(5000);
        expect(other, 'no grant while node 2 is down (every node is the quorum)').to.equal(null);
      } finally {
        await nodes.restart(2);
        await nodes.waitReady(clients);
      }
    });
  });

  describe('quorum', () => {
    it('is a majority for 1 permit and every node of 3 for 2 or more (so N + 1 permits never fit)', () => {
      const redlock = new Redlock(clients, { prefix });
      expect(redlock.semaphore('q', 1).quorum).to.equal(2);
      expect(redlock.semaphore('q', 2).quorum).to.equal(3);
      expect(redlock.semaphore('q', 3).quorum).to.equal(3);
      expect(new Redlock(clients[0], { prefix }).semaphore('q', 3).quorum).to.equal(1);
    });

    it('leaves no holder behind: grants answered after a 2-of-3 decision are removed by the release, refused attempts undo theirs', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('late'), 1);
      for (let i = 0; i < 50; i++) {
        const permit = await sem.tryAcquire(5000);
        expect(permit, `attempt ${i}`).to.not.equal(null);
        expect(await permit!.release()).to.equal(true);
      }
      const held = (await sem.tryAcquire(5000))!;
      for (let i = 0; i < 10; i++) expect(await sem.tryAcquire(5000)).to.equal(null);
      expect(await held.release()).to.equal(true);
      await sleep(50); // the last late answers and their undoing
      expect(await holdersOn(sem, clients)).to.deep.equal([0, 0, 0]);
    });

    it('leaves no holder behind after a node restarted: a late grant answered by the EVAL re-sent after NOSCRIPT, behind the release, is undone', async function () {
      this.timeout(20_000);
      await nodes.stop(2);
      await nodes.restart(2); // empty: no script cached
      await nodes.waitReady(clients);
      // node 2's NOSCRIPT answer comes 50 ms late, so the EVAL re-sent after it is written after the permit's release
      const slowNoscript = new Proxy(clients[2], {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (prop !== 'evalsha' || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
          return (...args: unknown[]) =>
            (value.apply(target, args) as Promise<unknown>).catch(async (error: unknown) => {
              await sleep(50);
              throw error;
            });
        },
      });
      const redlock = new Redlock([clients[0], clients[1], slowNoscript], { prefix });
      const sem = redlock.semaphore(name('late-after-restart'), 1);
      const permit = await sem.tryAcquire(5000);
      expect(permit, 'granted by nodes 0 and 1 while node 2 answers NOSCRIPT').to.not.equal(null);
      expect(await permit!.release()).to.equal(true);
      await sleep(150); // node 2's grant (EVAL, after the ZREM) and its undoing
      expect(await holdersOn(sem, clients)).to.deep.equal([0, 0, 0]);
    });

    it('counters that diverged (a node that lost its data, one that is ahead) are claimed up to the highest token: tokens keep growing, and a claimed token is refused to another permit', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('diverged'), 1);
      const counter = `${prefix}{semaphore-token}:${sem.name}`;
      const claimer = `${prefix}{semaphore-claim}:${sem.name}`;
      const first = (await sem.tryAcquire(5000))!;
      await first.release();
      await clients[0].del(counter); // node 0 lost its data
      await clients[2].set(counter, String(Number(first.fencingToken) + 10)); // node 2 is ahead
      // a new Redlock has seen no token: every node answers from its own counter, three different answers
      const second = (await new Redlock(clients, { prefix }).semaphore(sem.name, 1).tryAcquire(5000))!;
      expect(second.fencingToken).to.equal(first.fencingToken + 11n);
      const counters = await Promise.all(clients.map((c) => c.get(counter)));
      // the nodes that answered less were claimed up to the permit's token, with the permit as their claimer
      expect(counters).to.deep.equal([0, 1, 2].map(() => String(second.fencingToken)));
      const claimedBy = await Promise.all(clients.map((c) => c.get(claimer)));
      expect(claimedBy[2]).to.equal(null);
      expect(claimedBy[0]).to.be.a('string').and.equal(claimedBy[1]);
      await second.release();
      // a claim of a token another permit claimed there is refused; the claimer's own claim is confirmed
      const lagging = claimedBy.findIndex((v) => v !== null);
      const claim = (value: string) => clients[lagging].eval(SEM_CLAIM.source, 2, counter, claimer, String(second.fencingToken), value);
      expect(await claim(claimedBy[lagging]!)).to.equal(1);
      expect(await claim('another permit')).to.equal(0);
      const third = (await sem.tryAcquire(5000))!;
      expect(third.fencingToken > second.fencingToken).to.equal(true);
      await third.release();
    });

    it('keeps no expiry on the holder set, which holds at most `permits` members and is gone when every permit is released', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('layout'), 2);
      const holders = `${prefix}{semaphore}:${sem.name}`;
      const a = (await sem.tryAcquire(300))!;
      const b = (await sem.tryAcquire(5000))!;
      expect(await Promise.all(clients.map((c) => c.pttl(holders)))).to.deep.equal([-1, -1, -1]);
      await sleep(400); // a expired without release: its member stays until an acquisition finds the set full
      expect(await Promise.all(clients.map((c) => c.zcard(holders)))).to.deep.equal([2, 2, 2]);
      const c = (await sem.tryAcquire(5000))!; // sweeps a, takes its place
      expect(await Promise.all(clients.map((n) => n.zcard(holders)))).to.deep.equal([2, 2, 2]);
      expect(await a.release()).to.equal(false);
      await b.release();
      await c.release();
      expect(await Promise.all(clients.map((n) => n.exists(holders)))).to.deep.equal([0, 0, 0]);
    });

    it('names every node when no quorum has a place', async () => {
      const redlock = new Redlock(clients, { prefix });
      const sem = redlock.semaphore(name('full'), 1);
      const held = (await sem.tryAcquire(5000))!;
      const err = await rejection(sem.acquire(5000, { retryCount: 1, retryDelayMs: 10 }));
      expect(err).to.be.instanceOf(LockNotAvailableError);
      expect(err.details.attempts).to.equal(2);
      expect(err.message).to.match(/quorum 2 of 3 not reached.*full/);
      await held.release();
    });
  });

  describe('a holder killed with SIGKILL', function () {
    this.timeout(90_000);
    it('frees its permit within its TTL', async () => {
      const sem = { name: name('killed') };
      const ttlMs = 1500;
      const config = { backend: 'redis', urls: nodes.urls, prefix, name: sem.name, permits: 1, ttlMs };
      const child = await startSemaphoreHolder(config);
      const redlock = new Redlock(clients, { prefix });
      const semaphore = redlock.semaphore(sem.name, 1);
      expect(await semaphore.tryAcquire(5000), 'held by the child').to.equal(null);
      await sleep(ttlMs + 300);
      expect(await semaphore.tryAcquire(5000), 'still held past one TTL: the living holder extends it').to.equal(null);
      const killedAt = performance.now();
      child.kill('SIGKILL');
      let permit: RedisPermit | null = null;
      while (!permit && performance.now() - killedAt < ttlMs + 2000) {
        permit = await semaphore.tryAcquire(5000);
        if (!permit) await sleep(25);
      }
      expect(permit, 'granted again within the TTL after the kill').to.not.equal(null);
      expect(performance.now() - killedAt).to.be.below(ttlMs + 1000);
      await permit!.release();
    });
  });

  describe('bad input', () => {
    it('rejects bad permits and names with LockConfigError naming the semaphore', async () => {
      const redlock = new Redlock(clients, { prefix });
      for (const permits of [0, -1, 1.5, NaN, Infinity, '3', null, undefined] as any[]) {
        expect(() => redlock.semaphore('reports', permits), `permits ${String(permits)}`).to.throw(
          LockConfigError,
          /permits of semaphore "reports" must be a positive integer/,
        );
      }
      for (const bad of ['', 5, null, undefined, {}, '\ud800', 'x'.repeat(513)] as any[]) {
        expect(() => redlock.semaphore(bad, 3), `name ${JSON.stringify(bad)}`).to.throw(LockConfigError, /the name must be/);
      }
      const sem = redlock.semaphore(name('bad'), 2);
      for (const ttl of [0, -5, 1.5, '1000', 2] as any[]) {
        expect(await rejection(sem.tryAcquire(ttl)), `ttl ${ttl}`).to.be.instanceOf(LockConfigError);
      }
      expect(await rejection(sem.using(1000, 'nope' as any))).to.be.instanceOf(LockConfigError);
      expect(await rejection(sem.acquire(1000, { retryCount: -1 }))).to.be.instanceOf(LockConfigError);
      expect(await rejection(sem.using(1000, async () => 1, { automaticExtensionThresholdMs: 5000 }))).to.be.instanceOf(LockConfigError);
    });
  });
});
