/**
 * Redis leases bound to the database, on PostgreSQL and MariaDB:
 * - `fencing: { dataSource }`: tokens from a counter row per key, strictly increasing across
 *   FLUSHALL on every node, a node down, new Redlock instances and new processes; the
 *   Redis-held default restarting from 1 is the control;
 * - `using(…, { transaction: true })`: a lease deleted and taken by another holder mid-body
 *   rolls the body's write back and throws LockLostError; without the option the write stays;
 * - round trips, and bad input (LockConfigError before anything is sent).
 * The three Redis nodes are all owned by this file (started here), so flushing them touches no
 * one else's keys.
 */
import { spawn } from 'child_process';
import path from 'path';
import { expect } from 'chai';
import type Redis from 'ioredis';
import { Column, Entity, PrimaryGeneratedColumn, DataSource } from 'typeorm';
import {
  createFencingTable,
  DistributedLock,
  dropFencingTable,
  inTransaction,
  installLocking,
  Lease,
  LockConfigError,
  LockLostError,
  Redlock,
  transaction,
} from '../src';
import { race } from '../src/testing';
import { createDataSource, type BackendName } from './support/backends';
import { startRedisNodes, unavailable, type RedisNodes } from './support/redis-servers';
import { settled } from './support/settled';
import { describeEachBackend, sleep } from './support/suite';

@Entity('lease_notes')
class LeaseNote {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 100 }) body!: string;
}

async function rejection(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

function increasing(tokens: bigint[]): boolean {
  return tokens.every((t, i) => i === 0 || t > tokens[i - 1]);
}

describe('Redlock bound to the database', function () {
  this.timeout(60_000);
  let nodes: RedisNodes;
  let clients: Redis[];
  const prefix = `ormlock-dbtest:${process.pid}-${Date.now().toString(36)}:`;
  let seq = 0;
  const key = (name: string) => `${name}:${++seq}`;

  before(async function () {
    this.timeout(30_000);
    nodes = await startRedisNodes((reason) => unavailable(this, reason), { ownAll: true });
    clients = nodes.clients();
    await nodes.waitReady(clients);
  });
  after(async () => {
    await nodes?.close();
  });

  /**
   * How many nodes still hold `k` once the cleanup settled: a node that answered after the quorum
   * decided has its grant undone asynchronously, so this waits (up to 2 s) for the count to reach 0.
   */
  const nodesHolding = (k: string) =>
    settled(
      async () => {
        let n = 0;
        for (const c of clients) n += await c.exists(`${prefix}${k}`);
        return n;
      },
      (n) => n === 0,
      2000,
      10,
    );

  const flushAll = async () => {
    for (const c of clients) await c.flushall();
  };

  /** Tokens of `count` leases on `key` taken by a new process (a fresh Redlock, a fresh DataSource). */
  function tokensFromNewProcess(backend: BackendName, k: string, fencing: boolean, count = 3): Promise<bigint[]> {
    const fixture = path.join(__dirname, 'fixtures', 'redlock-fence-worker.ts');
    const config = { backend, urls: nodes.urls, prefix, key: k, fencing, count };
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-r', 'reflect-metadata', fixture, JSON.stringify(config)], {
        cwd: path.join(__dirname, '..'),
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (chunk) => (out += chunk.toString()));
      child.once('exit', (code) => {
        if (code !== 0) return reject(new Error(`fence worker exited with ${code}: ${out}`));
        resolve((JSON.parse(out.trim().split('\n').pop() as string).tokens as string[]).map((t) => BigInt(t)));
      });
    });
  }

  describeEachBackend('fencing and transactions', [LeaseNote], (env) => {
    let fenced: Redlock;
    const notes = () => env.ds.getRepository(LeaseNote);
    /** Rows seen from outside any transaction (a connection of the pool, after the fact). */
    const committedNotes = async (body: string) => {
      const qr = env.ds.createQueryRunner();
      try {
        return await qr.manager.countBy(LeaseNote, { body });
      } finally {
        await qr.release();
      }
    };

    before(async () => {
      await dropFencingTable(env.ds);
      await createFencingTable(env.ds);
      await createFencingTable(env.ds); // idempotent
      fenced = new Redlock(clients, { prefix, fencing: { dataSource: env.ds } });
    });

    describe('fencing: { dataSource }', () => {
      it('tokens strictly increase across FLUSHALL on every node, a node down, a new Redlock and a new process; the Redis-held default restarts (control)', async function () {
        this.timeout(60_000);
        const k = key('fence');
        const ctl = key('fence-control');
        const control = new Redlock(clients, { prefix });
        const tokens: bigint[] = [];
        const controlTokens: bigint[] = [];
        const take = async (rl: Redlock, list: bigint[], lockKey: string) => {
          const lease = await rl.acquire(lockKey, 5000, { retryCount: 20, retryDelayMs: 20 });
          list.push(lease.fencingToken);
          expect(await lease.release()).to.equal(true);
        };
        for (let i = 0; i < 5; i++) {
          await take(fenced, tokens, k);
          await take(control, controlTokens, ctl);
        }
        const beforeFlush = tokens[tokens.length - 1];
        const controlBeforeFlush = controlTokens[controlTokens.length - 1];

        await flushAll();
        // same process, same instance and a new one (no client-side memory)
        await take(fenced, tokens, k);
        await take(new Redlock(clients, { prefix, fencing: { dataSource: env.ds } }), tokens, k);
        // quorum change: node 2 down, {0, 1} decide
        await nodes.stop(2);
        while (clients[2].status === 'ready') await sleep(5);
        await take(new Redlock(clients, { prefix, fencing: { dataSource: env.ds } }), tokens, k);
        await nodes.restart(2);
        await nodes.waitReady(clients);
        await flushAll();
        // a new process
        tokens.push(...(await tokensFromNewProcess(env.name, k, true)));
        expect(tokens).to.have.length(11);
        expect(increasing(tokens), `tokens ${tokens.join(', ')}`).to.equal(true);
        expect(tokens[5] > beforeFlush).to.equal(true);

        // control: the Redis-held counter is gone with the data; a new process starts over
        const controlAfter = await tokensFromNewProcess(env.name, ctl, false, 1);
        expect(controlAfter[0] <= controlBeforeFlush, `control: ${controlTokens.join(', ')} then ${controlAfter[0]} after FLUSHALL`).to.equal(true);
        expect(controlAfter[0]).to.equal(1n);
      });

      it('costs one statement per acquisition and none per release', async () => {
        const k = key('round-trips');
        env.log.start();
        const lease = (await fenced.tryAcquire(k, 5000)) as Lease;
        const acquireStatements = env.log.stop();
        expect(lease).to.be.instanceOf(Lease);
        expect(acquireStatements, acquireStatements.join('\n')).to.have.length(1);
        expect(acquireStatements[0]).to.match(/INSERT INTO/i);
        env.log.start();
        expect(await lease.release()).to.equal(true);
        expect(env.log.stop()).to.deep.equal([]);
      });

      it('a lease on several keys gets a token above every earlier one on any of them, and every key is raised to it', async () => {
        const [a, b] = [key('multi-a'), key('multi-b')];
        const tokensOf = async (k: string | string[]) => {
          const lease = await fenced.acquire(k, 5000);
          await lease.release();
          return lease.fencingToken;
        };
        const ta = [await tokensOf(a), await tokensOf(a), await tokensOf(a)];
        const tb = await tokensOf(b);
        const tab = await tokensOf([b, a]);
        expect(tab > ta[2] && tab > tb).to.equal(true);
        expect((await tokensOf(b)) > tab, 'b alone after [b, a]').to.equal(true);
        expect((await tokensOf(a)) > tab, 'a alone after [b, a]').to.equal(true);
      });

      it('8 racing holders of one key get strictly increasing tokens in the order they held the lease', async () => {
        const k = key('race');
        const order: bigint[] = [];
        let inside = 0;
        let overlap = 0;
        const results = await race(8, () =>
          fenced.using(
            k,
            5000,
            async (lease) => {
              inside++;
              overlap = Math.max(overlap, inside);
              order.push(lease.fencingToken);
              await sleep(10);
              inside--;
            },
            { retryCount: 500, retryDelayMs: 5, retryJitterMs: 5 },
          ),
        );
        expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
        expect(overlap).to.equal(1);
        expect(order).to.have.length(8);
        expect(increasing(order), order.join(', ')).to.equal(true);
      });
    });

    describe('using(…, { transaction: true })', () => {
      /** The body writes a row, then the lease is deleted on every node and taken by another holder. */
      const stealingBody = (body: string, thief: { lease?: Lease }) => async (lease: Lease) => {
        await notes().save(notes().create({ body }));
        await Promise.all(clients.map((c) => c.del(...lease.resources)));
        thief.lease = (await new Redlock(clients, { prefix }).tryAcquire(lease.keys[0], 5000)) ?? undefined;
        expect(thief.lease, 'another holder took the lease mid-body').to.be.instanceOf(Lease);
        return 'done';
      };

      it('a lease taken by another holder mid-body: LockLostError and no row', async () => {
        const k = key('tx-lost');
        const thief: { lease?: Lease } = {};
        const err = await rejection(fenced.using(k, 5000, stealingBody(k, thief), { transaction: true }));
        expect(err).to.be.instanceOf(LockLostError);
        expect(await committedNotes(k), 'the write was rolled back').to.equal(0);
        await thief.lease?.release();
      });

      it('control: without the option the row stays', async () => {
        const k = key('tx-control');
        const thief: { lease?: Lease } = {};
        const outcome = await fenced.using(k, 5000, stealingBody(k, thief)).catch((e) => e);
        expect(outcome === 'done' || outcome instanceof LockLostError).to.equal(true);
        expect(await committedNotes(k), 'the write under the lost lease survived').to.equal(1);
        await thief.lease?.release();
      });

      it('a lease found lost by the automatic extension rolls back too', async () => {
        const k = key('tx-extension');
        const err = await rejection(
          fenced.using(
            k,
            400,
            async (lease) => {
              await notes().save(notes().create({ body: k }));
              await Promise.all(clients.map((c) => c.del(...lease.resources)));
              await new Promise<void>((resolve) => lease.signal.addEventListener('abort', () => resolve()));
            },
            { transaction: true },
          ),
        );
        expect(err).to.be.instanceOf(LockLostError);
        expect(await committedNotes(k)).to.equal(0);
      });

      it('commits the body on a held lease, on the transaction’s connection, before the lease is released', async () => {
        const k = key('tx-ok');
        let sawKey = -1;
        const result = await fenced.using(
          k,
          5000,
          async (lease) => {
            await notes().save(notes().create({ body: k }));
            expect(await committedNotes(k), 'not visible outside before COMMIT').to.equal(0);
            sawKey = lease.resources.length;
            return lease.fencingToken;
          },
          { transaction: true },
        );
        expect(typeof result).to.equal('bigint');
        expect(sawKey).to.equal(1);
        expect(await committedNotes(k)).to.equal(1);
        expect(await nodesHolding(k), 'released afterwards').to.equal(0);
      });

      it('@DistributedLock(key, { transaction: true }) runs the method in the lease’s transaction', async () => {
        const k = key('tx-decorator');
        class Notes {
          @DistributedLock((body: string) => body, { redlock: () => fenced, ttlMs: 5000, transaction: true })
          async add(body: string): Promise<boolean> {
            await notes().save(notes().create({ body }));
            return inTransaction(env.ds);
          }
        }
        expect(await new Notes().add(k), 'inside a transaction').to.equal(true);
        expect(await committedNotes(k)).to.equal(1);
      });

      it('joins the ambient transaction: a lost lease throws inside it, so the outer transaction rolls back', async () => {
        const k = key('tx-ambient');
        const thief: { lease?: Lease } = {};
        const err = await rejection(
          transaction(async () => {
            await notes().save(notes().create({ body: `${k}:outer` }));
            await fenced.using(k, 5000, stealingBody(k, thief), { transaction: true });
          }),
        );
        expect(err).to.be.instanceOf(LockLostError);
        expect(await committedNotes(`${k}:outer`)).to.equal(0);
        expect(await committedNotes(k)).to.equal(0);
        await thief.lease?.release();
      });
    });

    describe('bad input', () => {
      it('fencing without an installed DataSource, or with a bad table, is a LockConfigError at construction', async () => {
        const other = (await createDataSource(env.name, [], { fresh: false, poolSize: 1 })) as DataSource;
        try {
          expect(() => new Redlock(clients, { fencing: { dataSource: other } })).to.throw(LockConfigError, /installLocking/);
          const handle = await installLocking(other);
          const rl = new Redlock(clients, { prefix, fencing: { dataSource: other } });
          handle.uninstall();
          const k = key('uninstalled');
          const err = await rejection(rl.tryAcquire(k, 5000));
          expect(err, 'uninstalled after construction: fails at the call').to.be.instanceOf(LockConfigError);
          expect(err.message).to.match(/not installed/);
          expect(await nodesHolding(k), 'the grant was undone').to.equal(0);
        } finally {
          await other.destroy();
        }
        expect(() => new Redlock(clients, { fencing: {} as any })).to.throw(LockConfigError, /dataSource is required/);
        expect(() => new Redlock(clients, { fencing: { dataSource: 'db' as any } })).to.throw(LockConfigError, /TypeORM DataSource/);
        expect(() => new Redlock(clients, { fencing: 'yes' as any })).to.throw(LockConfigError, /fencing must be/);
        expect(() => new Redlock(clients, { fencing: { dataSource: env.ds, table: 'x; DROP TABLE y' } })).to.throw(LockConfigError, /identifier/);
      });

      it('a missing counter table is a LockConfigError naming createFencingTable, and no key is left on Redis', async () => {
        const rl = new Redlock(clients, { prefix, fencing: { dataSource: env.ds, table: 'ormlock_fencing_missing' } });
        const k = key('missing-table');
        const err = await rejection(rl.tryAcquire(k, 5000));
        expect(err).to.be.instanceOf(LockConfigError);
        expect(err.message).to.match(/createFencingTable\(dataSource, \{ table: 'ormlock_fencing_missing' \}\)/);
        expect(await nodesHolding(k)).to.equal(0);
      });

      it('transaction option types are checked before anything is sent', async () => {
        const k = key('tx-bad');
        const body = async () => 1;
        for (const bad of ['yes', 1, null, {}] as any[]) {
          const err = await rejection(fenced.using(k, 5000, body, { transaction: bad }));
          expect(err, `transaction: ${JSON.stringify(bad)}`).to.be.instanceOf(LockConfigError);
          expect(err.message).to.match(/transaction option must be true or false/);
        }
        expect(await rejection(fenced.using(k, 5000, body, { dataSource: env.ds }))).to.be.instanceOf(LockConfigError);
        expect(await rejection(fenced.using(k, 5000, body, { transaction: true, dataSource: {} as any }))).to.be.instanceOf(LockConfigError);
        const other = (await createDataSource(env.name, [], { fresh: false, poolSize: 1 })) as DataSource;
        try {
          const err = await rejection(fenced.using(k, 5000, body, { transaction: true, dataSource: other }));
          expect(err).to.be.instanceOf(LockConfigError);
          expect(err.message).to.match(/installLocking/);
        } finally {
          await other.destroy();
        }
        for (const c of clients) expect(await c.exists(`${prefix}${k}`), 'no lease was taken').to.equal(0);
      });
    });
  });
});
