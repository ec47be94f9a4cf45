import { spawn } from 'child_process';
import path from 'path';
import { performance } from 'perf_hooks';
import { expect } from 'chai';
import Redis from 'ioredis';
import { currentLockSignal } from '../src';
import { LockConfigError, LockLostError, LockNotAvailableError } from '../src/errors';
import { DistributedLock, Lease, Redlock, withDistributedLock } from '../src/redis';
import { clientFor, RedisNodes, startRedisNodes, unavailable } from './support/redis-servers';
import { settled } from './support/settled';
import { race } from '../src/testing';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function rejection(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('Redlock (Redis leases)', function () {
  this.timeout(30_000);

  let nodes: RedisNodes;
  let clients: Redis[];
  let redlock: Redlock;
  const prefix = `ormlock-test:${process.pid}-${Date.now().toString(36)}:`;
  let seq = 0;
  const key = (name: string) => `${name}:${++seq}`;
  /** The Redis key of a lock key (this suite's Redlocks have no namespace). */
  const resource = (k: string) => prefix + k;
  /** On how many nodes every key of the lease holds the lease's value. */
  const heldOn = async (lease: Lease): Promise<number> => {
    let n = 0;
    for (const c of clients) {
      if (c.status !== 'ready') continue;
      const values = await c.mget(...lease.resources);
      if (values.every((v) => v === lease.value)) n++;
    }
    return n;
  };
  /** `heldOn`, waiting up to 2 s for grants that arrive after the quorum decided. */
  const heldOnAll = (lease: Lease) =>
    settled(
      () => heldOn(lease),
      (n) => n >= clients.length,
    );
  /** `existsAnywhere`, waiting up to 2 s for releases that arrive after the quorum answered. */
  const existsAnywhereSettled = (redisKey: string) =>
    settled(
      () => existsAnywhere(redisKey),
      (n) => n === 0,
    );
  const existsAnywhere = async (redisKey: string): Promise<number> => {
    let n = 0;
    for (const c of clients) if (c.status === 'ready') n += await c.exists(redisKey);
    return n;
  };
  const waitDown = async (client: Redis) => {
    while (client.status === 'ready') await sleep(5);
  };

  before(async function () {
    this.timeout(30_000);
    nodes = await startRedisNodes((reason) => unavailable(this, reason));
    clients = nodes.clients();
    await nodes.waitReady(clients);
    redlock = new Redlock(clients, { prefix });
  });

  after(async () => {
    await nodes?.close();
  });

  describe('tryAcquire / release', () => {
    it('grants the first caller, answers null at once to the second, and grants again after release', async () => {
      const k = key('try');
      const before = Date.now();
      const a = await redlock.tryAcquire(k, 5000);
      const after = Date.now();
      expect(a).to.be.instanceOf(Lease);
      const lease = a as Lease;
      expect(lease.keys).to.deep.equal([k]);
      expect(lease.resources).to.deep.equal([resource(k)]);
      expect(lease.value).to.match(/^[0-9a-f]{32}$/);
      expect(typeof lease.fencingToken).to.equal('bigint');
      // validity = ttl − elapsed − drift (5000·0.01 + 2)
      expect(lease.expiresAt).to.be.within(before + 5000 - 52, after + 5000 - 52);
      // the call returns once a quorum granted; the third node's grant may still be on its way
      expect(await heldOnAll(lease)).to.equal(3);

      const t0 = performance.now();
      const b = await redlock.tryAcquire(k, 5000);
      const elapsed = performance.now() - t0;
      expect(b).to.equal(null);
      expect(elapsed, 'no retry delay').to.be.below(50);

      expect(await lease.release()).to.equal(true);
      expect(await lease.release(), 'second release gives the first answer').to.equal(true);
      // release() answers on a quorum; the last node's release may still be on its way
      expect(await existsAnywhereSettled(resource(k))).to.equal(0);
      const c = await redlock.tryAcquire(k, 5000);
      expect(c).to.be.instanceOf(Lease);
      expect((c as Lease).fencingToken > lease.fencingToken).to.equal(true);
      await (c as Lease).release();
    });

    it('locks several keys on each node atomically, all or none', async () => {
      const [a, b, c] = [key('multi-a'), key('multi-b'), key('multi-c')];
      const ab = await redlock.acquire([a, b], 5000);
      expect(ab.resources).to.deep.equal([resource(a), resource(b)]);
      expect(await heldOnAll(ab)).to.equal(3);
      expect(await redlock.tryAcquire(b, 5000)).to.equal(null);
      expect(await redlock.tryAcquire([c, b], 5000)).to.equal(null);
      expect(await existsAnywhere(resource(c)), 'c is not left locked by the failed [c, b]').to.equal(0);
      const err = await rejection(redlock.acquire([c, a], 5000, { retryCount: 0 }));
      expect(err).to.be.instanceOf(LockNotAvailableError);
      expect(err.details.nodes.map((n: any) => n.result)).to.deep.equal(['locked', 'locked', 'locked']);
      expect(err.details.nodes[0].lockedKey).to.equal(a);
      expect(await ab.release()).to.equal(true);
      const cb = await redlock.tryAcquire([c, b, b], 5000);
      expect(cb?.keys, 'a key given twice is one lock').to.deep.equal([c, b]);
      expect(cb!.fencingToken > ab.fencingToken).to.equal(true);
      await cb!.release();
    });

    it('prefixes keys with its own namespace option and ":"', async () => {
      const tenant = new Redlock(clients, { prefix, namespace: 'tenant-7' });
      const k = key('ns');
      const lease = await tenant.acquire(k, 5000);
      expect(lease.resources).to.deep.equal([`tenant-7:${prefix}${k}`]);
      expect(await clients[0].get(`tenant-7:${prefix}${k}`)).to.equal(lease.value);
      expect(await redlock.tryAcquire(k, 5000), 'another namespace is another lock').to.not.equal(null);
      await lease.release();
    });
  });

  describe('mutual exclusion across processes', function () {
    this.timeout(60_000);
    const fixture = path.join(__dirname, 'fixtures', 'redlock-worker.ts');

    /** Two processes × 10 concurrent loops × 5 read-modify-write increments, started on a barrier. */
    async function runWorkers(mode: 'locked' | 'unlocked'): Promise<{ counter: number; increments: number; errors: string[] }> {
      const counterKey = `${prefix}counter:${mode}:${++seq}`;
      const config = { urls: nodes.urls, prefix, lockKey: key(`counter-lock-${mode}`), counterKey, mode, workers: 10, iterations: 5, delayMs: 5, ttlMs: 5000 };
      const procs = [0, 1].map(() => {
        const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', fixture, JSON.stringify(config)], {
          cwd: path.join(__dirname, '..'),
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        let out = '';
        const ready = new Promise<void>((resolve, reject) => {
          child.stdout.on('data', (chunk) => {
            out += chunk.toString();
            if (out.startsWith('ready\n')) resolve();
          });
          child.once('exit', (code) => reject(new Error(`worker exited early with ${code}`)));
        });
        const done = new Promise<{ increments: number; errors: string[] }>((resolve, reject) => {
          child.once('exit', (code) => {
            if (code !== 0) return reject(new Error(`worker exited with ${code}: ${out}`));
            resolve(JSON.parse(out.trim().split('\n').pop() as string));
          });
        });
        ready.catch(() => undefined);
        return { child, ready, done };
      });
      await Promise.all(procs.map((p) => p.ready));
      const startAt = Date.now() + 100; // the barrier: every loop of both processes starts now
      for (const p of procs) p.child.stdin.write(`go ${startAt}\n`);
      const results = await Promise.all(procs.map((p) => p.done));
      const counter = Number(await clients[0].get(counterKey));
      await clients[0].del(counterKey);
      return {
        counter,
        increments: results.reduce((s, r) => s + r.increments, 0),
        errors: results.flatMap((r) => r.errors),
      };
    }

    it('control without the lease loses increments', async () => {
      const r = await runWorkers('unlocked');
      expect(r.increments).to.equal(100);
      expect(r.counter, 'the race must show lost updates').to.be.below(100);
    });

    it('under using() every increment of 2 processes × 10 workers is kept', async () => {
      const r = await runWorkers('locked');
      expect(r.errors).to.deep.equal([]);
      expect(r.increments).to.equal(100);
      expect(r.counter).to.equal(100);
    });
  });

  describe('node failures (quorum 2 of 3)', function () {
    this.timeout(30_000);

    afterEach(async () => {
      for (const n of [1, 2]) if (clients[n].status !== 'ready') await nodes.restart(n);
      await nodes.waitReady(clients);
    });

    it('acquires with one node of three down, and not with two down (no key left behind)', async () => {
      await nodes.stop(2);
      await waitDown(clients[2]);
      const k = key('one-down');
      const lease = await redlock.acquire(k, 5000, { retryCount: 0 });
      expect(await heldOn(lease)).to.equal(2);
      expect(await redlock.tryAcquire(k, 5000)).to.equal(null);
      expect(await lease.release()).to.equal(true);
      const again = await redlock.tryAcquire(k, 5000);
      expect(again).to.be.instanceOf(Lease);
      await again!.release();

      await nodes.stop(1);
      await waitDown(clients[1]);
      const k2 = key('two-down');
      const started = Date.now();
      const err = await rejection(redlock.acquire(k2, 5000, { retryCount: 2, retryDelayMs: 30, retryJitterMs: 0 }));
      expect(err).to.be.instanceOf(LockNotAvailableError);
      expect(err.code).to.equal('LOCK_NOT_AVAILABLE');
      expect(err.key).to.equal(k2);
      expect(err.details.attempts).to.equal(3);
      expect(err.details.waitedMs).to.be.at.least(60);
      expect(Date.now() - started).to.be.below(3000);
      expect(err.details.nodes).to.have.length(3);
      expect(err.details.nodes[0].result).to.equal('granted');
      expect(err.details.nodes[1].result).to.not.equal('granted');
      expect(err.details.nodes[2].result).to.not.equal('granted');
      expect(err.message).to.match(/quorum 2 of 3/);
      expect(await clients[0].exists(resource(k2)), 'the partial grant on node 0 was undone').to.equal(0);
    });

    /** Runs `fn` while node 1 is down (stopped, its client no longer ready), then brings it back. */
    const whileNode1Down = async (fn: () => Promise<unknown>): Promise<void> => {
      await nodes.stop(1);
      await waitDown(clients[1]);
      try {
        await fn();
      } finally {
        await nodes.restart(1);
        await nodes.waitReady(clients);
      }
    };

    it('a node that granted the lease and cannot answer at release still holds it while the lease is valid; one that answers "not held" does not', async () => {
      // granted on exactly {1, 2}: node 0 holds a leftover key of another lease
      const k = key('silent-holder');
      await clients[0].set(resource(k), 'another lease', 'PX', 5000);
      const lease = (await redlock.tryAcquire(k, 5000)) as Lease;
      expect(lease, 'granted by nodes 1 and 2').to.be.instanceOf(Lease);
      expect(await heldOn(lease)).to.equal(2);
      // node 0: another lease's key; node 1: down (it granted: its key outlives the lease); node 2: deleted
      await whileNode1Down(async () => expect(await lease.release(), 'confirmed by node 2, and node 1 granted it').to.equal(true));

      const k2 = key('silent-holder-lost');
      const lost = (await redlock.tryAcquire(k2, 5000)) as Lease;
      expect(await heldOnAll(lost)).to.equal(3);
      await clients[0].del(resource(k2));
      await clients[2].del(resource(k2));
      // nodes 0 and 2 answer "not held" (evidence of a loss); node 1's silence alone is 1 of 3
      await whileNode1Down(async () => expect(await lost.release(), 'the nodes that answer say it was gone').to.equal(false));
    });

    it('a silent node counts only if it granted the lease or confirmed its last extension, and only while the lease is valid', async () => {
      // node 1 down at acquisition: granted by {0, 2}; node 2's key then deleted
      await whileNode1Down(async () => {
        const k = key('silent-not-granted');
        const lease = (await redlock.tryAcquire(k, 5000)) as Lease;
        expect(lease).to.be.instanceOf(Lease);
        await clients[2].del(resource(k));
        expect(await lease.release(), 'node 1 never granted it: 1 of 3').to.equal(false);
      });

      // granted by all three, extended while node 1 was down: node 1's key expires at the old TTL, so it no longer counts
      const k2 = key('silent-missed-extension');
      const extended = (await redlock.tryAcquire(k2, 2000)) as Lease;
      expect(await heldOnAll(extended)).to.equal(3);
      await whileNode1Down(async () => {
        await extended.extend(5000);
        await clients[2].del(resource(k2));
        expect(await extended.release(), 'node 1 missed the extension: only node 0 holds it').to.equal(false);
      });

      // granted by all three, expired: silence proves nothing once the validity ran out
      const expired = (await redlock.tryAcquire(key('silent-expired'), 300)) as Lease;
      expect(await heldOnAll(expired)).to.equal(3);
      await whileNode1Down(async () => {
        await sleep(350);
        expect(await expired.release(), 'expired: no node holds it, and silence does not count').to.equal(false);
      });
    });
  });

  describe('compare-and-set release and extend', () => {
    it('an expired lease cannot release or extend the lease that took over', async () => {
      const k = key('expired');
      const a = (await redlock.tryAcquire(k, 200)) as Lease;
      expect(a).to.be.instanceOf(Lease);
      await sleep(300);
      expect(a.isValid).to.equal(false);
      const b = (await redlock.tryAcquire(k, 5000)) as Lease;
      expect(b, 'B takes the expired key').to.be.instanceOf(Lease);
      expect(b.fencingToken > a.fencingToken).to.equal(true);

      const err = await rejection(a.extend(60_000));
      expect(err).to.be.instanceOf(LockLostError);
      expect(a.state).to.equal('lost');
      expect(a.signal.aborted).to.equal(true);
      expect(a.signal.reason).to.equal(err);
      expect(await a.release()).to.equal(false);
      expect(() => a.assertValid()).to.throw(LockLostError);

      expect(await heldOn(b), "B's key survives on every node").to.equal(3);
      for (const c of clients) expect(await c.pttl(resource(k))).to.be.within(1, 5000);
      expect(await b.release()).to.equal(true);
    });

    it('release of an expired lease is false and leaves the new holder alone', async () => {
      const k = key('expired-release');
      const a = (await redlock.tryAcquire(k, 150)) as Lease;
      await sleep(250);
      const b = (await redlock.tryAcquire(k, 5000)) as Lease;
      expect(b).to.be.instanceOf(Lease);
      expect(await a.release()).to.equal(false);
      expect(await heldOn(b)).to.equal(3);
      expect(await rejection(a.extend(1000))).to.be.instanceOf(LockLostError);
      await b.release();
    });

    it('extend() resets the TTL on the nodes and moves expiresAt', async () => {
      const lease = await redlock.acquire(key('extend'), 1000);
      const before = lease.expiresAt;
      await sleep(50);
      await lease.extend(10_000);
      expect(lease.expiresAt).to.be.above(before + 8000);
      for (const c of clients) expect(await c.pttl(lease.resources[0])).to.be.above(9000);
      await lease.release();
      expect(await rejection(lease.extend(1000))).to.be.instanceOf(LockLostError);
    });
  });

  describe('using()', () => {
    it('keeps a 500 ms lease through 2 s of work by extending it', async () => {
      const k = key('using-long');
      let checks = 0;
      const gaps: number[] = [];
      const result = await redlock.using(k, 500, async (lease) => {
        const end = Date.now() + 2000;
        while (Date.now() < end) {
          const n = await heldOn(lease);
          checks++;
          if (n !== 3) gaps.push(n);
          await sleep(25);
        }
        expect(lease.signal.aborted).to.equal(false);
        expect(lease.expiresAt).to.be.above(lease.acquiredAt + 1500);
        return 'done';
      });
      expect(result).to.equal('done');
      expect(checks).to.be.above(30);
      expect(gaps, 'the key was present on all nodes at every check').to.deep.equal([]);
      expect(await existsAnywhere(resource(k)), 'released afterwards').to.equal(0);
    });

    it('aborts the signal and rejects with LockLostError when the key is deleted mid-work', async () => {
      const k = key('using-deleted');
      let abortedAfter = -1;
      const started = Date.now();
      const err = await rejection(
        redlock.using(k, 500, async (lease) => {
          setTimeout(() => void Promise.all(clients.map((c) => c.del(...lease.resources))), 700);
          await new Promise<void>((resolve) => {
            lease.signal.addEventListener('abort', () => resolve());
            setTimeout(resolve, 2000);
          });
          abortedAfter = lease.signal.aborted ? Date.now() - started : -1;
          expect(lease.signal.reason).to.be.instanceOf(LockLostError);
          expect(currentLockSignal(), "the body's lock signal is the lease's").to.equal(lease.signal);
        }),
      );
      expect(err).to.be.instanceOf(LockLostError);
      expect(err.code).to.equal('LOCK_LOST');
      expect(abortedAfter).to.be.within(700, 1300);
    });

    it('rejects with LockLostError even when fn ignores the signal and resolves', async () => {
      const k = key('using-ignored');
      let sawAbort = false;
      const err = await rejection(
        redlock.using(k, 500, async (lease) => {
          setTimeout(() => void Promise.all(clients.map((c) => c.del(...lease.resources))), 300);
          await sleep(1000);
          sawAbort = lease.signal.aborted;
          return 'finished anyway';
        }),
      );
      expect(sawAbort).to.equal(true);
      expect(err).to.be.instanceOf(LockLostError);
    });

    it('rejects with LockLostError when the event loop was blocked past the validity', async () => {
      const k = key('using-blocked');
      const err = await rejection(
        redlock.using(k, 300, async (lease) => {
          const until = Date.now() + 400;
          while (Date.now() < until) {
            /* block: the extension timer cannot run */
          }
          // the key expired meanwhile and another lease took it
          const other = await redlock.tryAcquire(k, 5000);
          expect(other).to.be.instanceOf(Lease);
          setTimeout(() => void other!.release(), 200);
          return lease.fencingToken;
        }),
      );
      expect(err).to.be.instanceOf(LockLostError);
      // found by the late extension (key gone or taken) or at release (expired while fn ran)
      expect(err.message).to.match(/lost: the key is gone or belongs to another lease|expired while the function ran/);
    });

    it('passes the result and the error of fn through, and releases', async () => {
      const k = key('using-pass');
      expect(await redlock.using(k, 1000, async () => 42)).to.equal(42);
      const boom = new Error('boom');
      expect(
        await rejection(
          redlock.using(k, 1000, async () => {
            throw boom;
          }),
        ),
      ).to.equal(boom);
      expect(await existsAnywhere(resource(k))).to.equal(0);
    });
  });

  describe('a dead client (status end) in a 3-node Redlock', function () {
    this.timeout(60_000);
    let dead: Redis;
    let withDead: Redlock;

    before(async () => {
      dead = clientFor(nodes.urls[2]);
      await nodes.waitReady([dead]);
      dead.disconnect(); // gives up: status 'end', no reconnection
      while (dead.status !== 'end') await sleep(5);
      withDead = new Redlock([clients[0], clients[1], dead], { prefix, retryCount: 200, retryDelayMs: 10, retryJitterMs: 10 });
    });

    it('acquires and releases on the healthy quorum', async () => {
      const k = key('dead');
      const lease = await withDead.acquire(k, 5000, { retryCount: 0 });
      expect(await clients[0].get(resource(k))).to.equal(lease.value);
      expect(await clients[1].get(resource(k))).to.equal(lease.value);
      expect(await withDead.tryAcquire(k, 5000)).to.equal(null);
      expect(await lease.release()).to.equal(true);
      expect(await existsAnywhereSettled(resource(k))).to.equal(0);
    });

    it('counts a client whose commands throw at once (no promise) as a failed vote: leases and permits on the others', async () => {
      const throwing = clientFor(nodes.urls[1]);
      await nodes.waitReady([throwing]);
      (throwing as any).evalsha = () => {
        throw new Error('ERR thrown at once');
      };
      try {
        const rl = new Redlock([clients[0], throwing, clients[2]], { prefix });
        const lease = await rl.acquire(key('throwing'), 5000, { retryCount: 0 });
        expect(await lease.release()).to.equal(true);
        const permit = await rl.semaphore(key('throwing-sem'), 1).acquire(5000, { retryCount: 0 });
        expect(await permit.release()).to.equal(true);
        const both = new Redlock([clients[0], throwing, dead], { prefix });
        const err = await rejection(both.acquire(key('throwing'), 5000, { retryCount: 0 }));
        expect(err).to.be.instanceOf(LockNotAvailableError);
        expect(err.message).to.match(/node 1 .*error: ERR thrown at once/);
      } finally {
        throwing.disconnect();
      }
    });

    it('counts a client whose commands fail as a failed vote too', async () => {
      const failing = clientFor(nodes.urls[1]);
      await nodes.waitReady([failing]);
      (failing as any).evalsha = () => Promise.reject(new Error('ERR the node is broken'));
      try {
        const rl = new Redlock([clients[0], failing, clients[2]], { prefix });
        const k = key('failing');
        const lease = await rl.acquire(k, 5000, { retryCount: 0 });
        expect(await lease.release()).to.equal(true);
        const both = new Redlock([clients[0], failing, dead], { prefix });
        const err = await rejection(both.acquire(k, 5000, { retryCount: 0 }));
        expect(err).to.be.instanceOf(LockNotAvailableError);
        expect(err.message).to.match(/node 1 .*error: ERR the node is broken/);
        expect(err.message).to.match(/node 2 .*not_ready: not connected \(status end\)/);
      } finally {
        failing.disconnect();
      }
    });

    /** 20 racing read-modify-write increments of a Redis counter, each with a 10 ms window. */
    async function increments(locked: boolean): Promise<number> {
      const k = key('dead-race');
      const counterKey = `${prefix}dead-counter:${++seq}`;
      const step = async () => {
        const v = Number((await clients[0].get(counterKey)) ?? 0);
        await sleep(10);
        await clients[0].set(counterKey, String(v + 1));
      };
      const results = await race(20, () => (locked ? withDead.using(k, 5000, step) : step()));
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      const n = Number(await clients[0].get(counterKey));
      await clients[0].del(counterKey);
      return n;
    }

    it('control: without the lease, 20 racing increments lose updates', async () => {
      expect(await increments(false)).to.be.below(20);
    });

    it('exclusion holds under 20 racing callers', async () => {
      expect(await increments(true)).to.equal(20);
    });
  });

  describe('monotonic validity', () => {
    it('a clock stepped back 10 s mid-body does not hide an expired lease: LockLostError', async () => {
      let offset = 0;
      const rl = new Redlock(clients, { prefix, clock: () => performance.now() + offset });
      const k = key('step');
      const err = await rejection(
        rl.using(k, 300, async () => {
          offset = -10_000; // the clock steps back
          const until = performance.now() + 600;
          while (performance.now() < until) {
            /* block past the TTL: the extension cannot run */
          }
          return 'done';
        }),
      );
      expect(err).to.be.instanceOf(LockLostError);
    });

    it('a wall clock (Date.now) stepped back 10 s mid-body changes nothing: LockLostError', async () => {
      const realNow = Date.now;
      const k = key('wall-step');
      try {
        const err = await rejection(
          redlock.using(k, 300, async () => {
            Date.now = () => realNow() - 10_000;
            const until = performance.now() + 600;
            while (performance.now() < until) {
              /* block past the TTL */
            }
            return 'done';
          }),
        );
        expect(err).to.be.instanceOf(LockLostError);
      } finally {
        Date.now = realNow;
      }
    });

    it('a release that finds the lease on no quorum rejects with LockLostError', async () => {
      const k = key('lost-release');
      const err = await rejection(
        redlock.using(
          k,
          5000,
          async (lease) => {
            await Promise.all(clients.map((c) => c.del(...lease.resources)));
            return 'done';
          },
          { automaticExtensionThresholdMs: 1 },
        ),
      );
      expect(err).to.be.instanceOf(LockLostError);
      expect(err.message).to.match(/not found on a quorum of nodes at release/);
    });

    it('runs the body as a lock scope: currentLockSignal() is aborted when the lease is lost', async () => {
      const k = key('signal');
      let inner: AbortSignal | undefined;
      const err = await rejection(
        redlock.using(k, 500, async (lease) => {
          inner = currentLockSignal();
          expect(inner).to.not.equal(undefined);
          setTimeout(() => void Promise.all(clients.map((c) => c.del(...lease.resources))), 100);
          await new Promise<void>((resolve) => {
            inner!.addEventListener('abort', () => resolve());
            setTimeout(resolve, 2000);
          });
        }),
      );
      expect(err).to.be.instanceOf(LockLostError);
      expect(inner!.aborted).to.equal(true);
      expect(currentLockSignal()).to.equal(undefined);
    });
  });

  describe('fencing tokens', function () {
    this.timeout(40_000);

    it('increase strictly across 1,000 acquisitions, while nodes go down and come back empty', async () => {
      // A fresh Redlock for every acquisition: no client-side memory of tokens helps, the
      // guarantee has to come from the nodes' counters and quorum intersection.
      const dead = new Redis('redis://127.0.0.1:1', { retryStrategy: () => 50, enableOfflineQueue: false, lazyConnect: false });
      dead.on('error', () => undefined);
      const k = key('fence');
      const tokens: bigint[] = [];
      const acquireOnce = async (set: Redis[]) => {
        const lease = await new Redlock(set, { prefix }).acquire(k, 2000, { retryCount: 5, retryDelayMs: 10 });
        tokens.push(lease.fencingToken);
        expect(await lease.release()).to.equal(true);
      };
      try {
        for (let i = 0; i < 1000; i++) {
          if (i === 200) {
            await nodes.stop(1); // quorum {0, 2}
            await waitDown(clients[1]);
          }
          if (i === 400) {
            await nodes.restart(1); // back, empty
            await nodes.stop(2); // quorum {0, 1}: node 1 must be raised to the token
            await waitDown(clients[2]);
            await nodes.waitReady([clients[1]]);
          }
          if (i === 600) {
            await nodes.restart(2); // back, empty
            await nodes.waitReady([clients[2]]);
          }
          // 600..799: node 0 unreachable (a dead client in its place): quorum {1, 2}
          const set = i >= 600 && i < 800 ? [dead, clients[1], clients[2]] : clients;
          await acquireOnce(set);
        }
      } finally {
        dead.disconnect();
      }
      expect(tokens).to.have.length(1000);
      for (let i = 1; i < tokens.length; i++) {
        if (!(tokens[i] > tokens[i - 1])) expect.fail(`token ${i} (${tokens[i]}) is not above token ${i - 1} (${tokens[i - 1]})`);
      }
    });
  });

  describe('Redis-held fencing counters that lost their data', () => {
    it('a long-lived Redlock raises the nodes to the highest token it has seen; a fresh one starts over (the limit database fencing lifts)', async () => {
      const own = new Redlock(clients, { prefix: `${prefix}seen:` });
      const k = key('seen');
      const tokens: bigint[] = [];
      for (let i = 0; i < 3; i++) {
        const lease = await own.acquire(k, 5000);
        tokens.push(lease.fencingToken);
        await lease.release();
      }
      // the counter key (namespace + prefix) is gone on every node, as after FLUSHALL
      for (const c of clients) await c.del(`${prefix}seen:`);
      const after = await own.acquire(k, 5000);
      expect(after.fencingToken > tokens[2], `${after.fencingToken} after ${tokens.join(', ')}`).to.equal(true);
      await after.release();
      for (const c of clients) expect(Number(await c.get(`${prefix}seen:`))).to.equal(Number(after.fencingToken));
      for (const c of clients) await c.del(`${prefix}seen:`);
      const fresh = await new Redlock(clients, { prefix: `${prefix}seen:` }).acquire(k, 5000);
      expect(fresh.fencingToken, 'a new process starts over').to.equal(1n);
      await fresh.release();
    });
  });

  describe('bad input', () => {
    const untilEnded = async (client: Redis) => {
      while (client.status !== 'end') await sleep(5);
    };

    it('rejects bad clients at construction', async () => {
      expect(() => new Redlock([])).to.throw(LockConfigError, /at least one/);
      expect(() => new Redlock(undefined as any)).to.throw(LockConfigError);
      expect(() => new Redlock([{} as any])).to.throw(LockConfigError, /not an ioredis client/);
      expect(() => new Redlock([clients[0], clients[0]])).to.throw(LockConfigError, /twice/);
      const lazy = new Redis(nodes.urls[0], { lazyConnect: true });
      expect(() => new Redlock([lazy])).to.throw(LockConfigError, /lazyConnect/);
      const closed = clientFor(nodes.urls[0]);
      await nodes.waitReady([closed]);
      await closed.quit();
      await untilEnded(closed);
      // a closed client is a node that is down (a failed vote), not a configuration error
      expect(new Redlock([clients[0], closed]).quorum).to.equal(2);
      expect(() => new Redlock(clients, { clock: 5 as any })).to.throw(LockConfigError, /clock/);
    });

    it('counts a client closed after construction as a failed vote, and names it when the quorum fails', async () => {
      const own = clientFor(nodes.urls[1]);
      const own2 = clientFor(nodes.urls[2]);
      await nodes.waitReady([own, own2]);
      const rl = new Redlock([clients[0], own, own2], { prefix });
      await own.quit();
      await untilEnded(own);
      const lease = await rl.tryAcquire(key('closed'), 1000);
      expect(lease).to.be.instanceOf(Lease);
      expect(await lease!.release()).to.equal(true);
      await own2.quit();
      await untilEnded(own2);
      const err = await rejection(rl.acquire(key('closed'), 1000, { retryCount: 0 }));
      expect(err).to.be.instanceOf(LockNotAvailableError);
      expect(err.message).to.match(/node 1 .*not_ready: not connected \(status end\)/);
      expect(err.message).to.match(/node 2 .*not_ready/);
    });

    it('rejects bad options', () => {
      expect(() => new Redlock(clients, { driftFactor: 1.5 })).to.throw(LockConfigError, /driftFactor/);
      expect(() => new Redlock(clients, { retryCount: -1 })).to.throw(LockConfigError, /retryCount/);
      expect(() => new Redlock(clients, { retryCount: 1.5 })).to.throw(LockConfigError, /retryCount/);
      expect(() => new Redlock(clients, { retryDelayMs: -5 })).to.throw(LockConfigError, /retryDelayMs/);
      expect(() => new Redlock(clients, { prefix: 3 as any })).to.throw(LockConfigError, /prefix/);
    });

    it('rejects bad TTLs and keys at the call', async () => {
      for (const ttl of [0, -5, 1.5, NaN, Infinity, '1000' as any, 2]) {
        expect(await rejection(redlock.tryAcquire(key('ttl'), ttl)), `ttl ${ttl}`).to.be.instanceOf(LockConfigError);
        expect(await rejection(redlock.acquire(key('ttl'), ttl)), `ttl ${ttl}`).to.be.instanceOf(LockConfigError);
        expect(await rejection(redlock.using(key('ttl'), ttl, async () => 1)), `ttl ${ttl}`).to.be.instanceOf(LockConfigError);
      }
      for (const k of ['', [], ['a', ''], null, undefined, {}, NaN] as any[]) {
        expect(await rejection(redlock.tryAcquire(k, 1000)), `key ${JSON.stringify(k)}`).to.be.instanceOf(LockConfigError);
      }
      expect(await rejection(redlock.acquire(key('x'), 1000, { retryCount: -2 }))).to.be.instanceOf(LockConfigError);
      expect(await rejection(redlock.using(key('x'), 1000, async () => 1, { automaticExtensionThresholdMs: 5000 }))).to.be.instanceOf(LockConfigError);
      expect(await rejection(redlock.using(key('x'), 1000, 'nope' as any))).to.be.instanceOf(LockConfigError);
    });
  });

  describe('lock events (its own onLockEvent and observers)', () => {
    it("emits kind 'lease' events: acquired with waitedMs, released with heldMs, not_available, lost; a throwing observer breaks nothing", async () => {
      const seen: any[] = [];
      const observed: any[] = [];
      const rl = new Redlock(clients, {
        prefix,
        onLockEvent: (e) => seen.push(e),
        observers: [
          {
            onLockEvent: () => {
              throw new Error('observer bug');
            },
          },
          { onLockEvent: (e) => observed.push(e) },
        ],
      });
      const k = key('events');
      const lease = (await rl.tryAcquire(k, 5000)) as Lease;
      expect(await rl.tryAcquire(k, 5000)).to.equal(null);
      await sleep(20);
      await lease.release();
      const lost = await rejection(
        rl.using(key('events-lost'), 300, async (l) => {
          await Promise.all(clients.map((c) => c.del(...l.resources)));
          await new Promise<void>((resolve) => l.signal.addEventListener('abort', () => resolve()));
        }),
      );
      expect(lost).to.be.instanceOf(LockLostError);
      const types = seen.map((e) => e.type);
      expect(types.slice(0, 3)).to.deep.equal(['acquired', 'not_available', 'released']);
      expect(types).to.include('lost');
      for (const e of seen) expect(e.kind).to.equal('lease');
      expect(seen[0], 'the keys unquoted, as an advisory target').to.include({ target: k });
      expect(seen[0].waitedMs).to.be.a('number');
      expect(seen[2].heldMs).to.be.at.least(15);
      expect(seen.find((e) => e.type === 'lost').heldMs).to.be.a('number');
      expect(observed).to.deep.equal(seen);
      // bad observer options
      expect(() => new Redlock(clients, { onLockEvent: 'log' as any })).to.throw(LockConfigError, /onLockEvent/);
      expect(() => new Redlock(clients, { observers: [{}] as any })).to.throw(LockConfigError, /observers\[0\]/);
      expect(() => new Redlock(clients, { namespace: 7 as any })).to.throw(LockConfigError, /namespace/);
    });
  });

  describe('@DistributedLock', () => {
    it('serializes calls with the same key and lets other keys run alongside', async () => {
      const prefixKey = key('sku');
      class Inventory {
        active = new Map<string, number>();
        maxActive = 0;
        maxPerSku = 0;
        @DistributedLock((sku: string) => `${prefixKey}:${sku}`, { redlock: () => redlock, ttlMs: 2000, retryCount: 500, retryDelayMs: 5, retryJitterMs: 5 })
        async reserve(sku: string, n: number): Promise<number> {
          const active = (this.active.get(sku) ?? 0) + 1;
          this.active.set(sku, active);
          this.maxPerSku = Math.max(this.maxPerSku, active);
          this.maxActive = Math.max(
            this.maxActive,
            [...this.active.values()].reduce((a, b) => a + b, 0),
          );
          await sleep(20);
          this.active.set(sku, (this.active.get(sku) ?? 1) - 1);
          return n;
        }
      }
      const inv = new Inventory();
      const results = await Promise.all([1, 2, 3, 4, 5].flatMap((n) => [inv.reserve('x', n), inv.reserve('y', n * 10)]));
      expect(results).to.deep.equal([1, 10, 2, 20, 3, 30, 4, 40, 5, 50]);
      expect(inv.maxPerSku, 'one call per key at a time').to.equal(1);
      expect(inv.maxActive, 'different keys overlap').to.equal(2);
    });

    it('throws LockConfigError naming Class.method for a non-async method', () => {
      expect(() => {
        class Ledger {
          @DistributedLock('ledger', { redlock, ttlMs: 1000 })
          post(): number {
            return 1;
          }
        }
        return Ledger;
      }).to.throw(LockConfigError, /Ledger\.post/);
      expect(() => {
        class Ledger2 {
          @DistributedLock('ledger', { redlock, ttlMs: 0 })
          async post(): Promise<number> {
            return 1;
          }
        }
        return Ledger2;
      }).to.throw(LockConfigError, /Ledger2\.post.*ttlMs/);
    });

    it('has a plain-function twin, withDistributedLock', async () => {
      const k = key('twin');
      const token = await withDistributedLock(redlock, k, 1000, async (lease) => {
        expect(await heldOn(lease)).to.equal(3);
        return lease.fencingToken;
      });
      expect(typeof token).to.equal('bigint');
      expect(await existsAnywhere(resource(k))).to.equal(0);
    });
  });
});
