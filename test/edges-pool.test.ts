/**
 * Pool exhaustion: a call that already holds a connection and needs a second
 * one (`requires_new`, a session lock outside a transaction) never waits forever for the pool:
 * past `connectionTimeoutMs` it fails with PoolExhaustedError naming the pool size and how many
 * connections the caller's own scopes hold. At pool 1, and at pool 3 with 3 concurrent outer
 * transactions (a pool larger than the nesting depth is not enough under concurrency). Calls
 * that need no second connection still work at pool 1, and the pool is whole afterwards.
 *
 * The anomaly (a wait without end) has no runnable control; `Barrier` makes sure all outer
 * transactions hold their connection before any asks for a second one.
 */
import { expect } from 'chai';
import { PoolExhaustedError, transaction, withAdvisoryLock } from '../src';
import { Barrier } from '../src/testing';
import { EDGE_ENTITIES, EdgeAccount } from './fixtures/edges';
import { describeEachBackend } from './support/suite';

const BOUND_MS = 300;

function expectExhausted(error: unknown, poolSize: number, caller: string): void {
  expect(error, String((error as Error)?.stack ?? error)).to.be.instanceOf(PoolExhaustedError);
  const e = error as PoolExhaustedError;
  expect(e.details.poolSize).to.equal(poolSize);
  expect(e.details.held).to.equal(1);
  expect(e.waitedMs).to.equal(BOUND_MS);
  expect(e.message).to.contain(`of the pool's ${poolSize}`).and.contain(caller).and.contain('connectionTimeoutMs');
}

describeEachBackend(
  'edges: pool of 1',
  EDGE_ENTITIES,
  (env) => {
    const accounts = () => env.ds.getRepository(EdgeAccount);

    it('requires_new inside a transaction: PoolExhaustedError within connectionTimeoutMs, and the outer transaction still works and commits', async () => {
      const result = await transaction(async () => {
        const a = await accounts().save(accounts().create({ name: 'pool1', credits: 1 }));
        const err = await transaction(async () => 'inner', { propagation: 'requires_new' }).then(
          () => null,
          (e) => e,
        );
        expectExhausted(err, 1, 'transaction()');
        await accounts().update(a.id, { credits: 2 });
        return a.id;
      });
      expect((await accounts().findOneByOrFail({ id: result })).credits).to.equal(2);
    });

    it('requires_new inside a session lock (its pinned connection): PoolExhaustedError, the lock is released', async () => {
      const err = await withAdvisoryLock('edge-pool1-session', () => transaction(async () => 1, { propagation: 'requires_new' }), { scope: 'session' }).then(
        () => null,
        (e) => e,
      );
      expectExhausted(err, 1, 'transaction()');
      expect(await withAdvisoryLock('edge-pool1-session', async () => 'free', { timeoutMs: 0 })).to.equal('free');
    });

    it('what needs no second connection works at pool 1: a session lock inside a transaction, a transaction inside a session lock, nested required transactions', async () => {
      const out = await transaction(async () =>
        withAdvisoryLock('edge-pool1-a', async () => transaction(async () => accounts().count()), { scope: 'session' }),
      );
      expect(out).to.be.a('number');
      const inSession = await withAdvisoryLock('edge-pool1-b', () => transaction(async () => accounts().count()), { scope: 'session' });
      expect(inSession).to.be.a('number');
    });

    it('the pool is whole afterwards: the timed-out wait gave its connection back', async () => {
      for (let i = 0; i < 3; i++) expect(await transaction(async () => accounts().count())).to.be.a('number');
    });
  },
  { poolSize: 1, install: { connectionTimeoutMs: BOUND_MS } },
);

describeEachBackend(
  'edges: pool of 3, 3 concurrent outer transactions',
  EDGE_ENTITIES,
  (env) => {
    const accounts = () => env.ds.getRepository(EdgeAccount);

    for (const inner of ['requires_new', "a session lock's requires_new"] as const) {
      it(`each of 3 outer transactions asks for ${inner} once all 3 hold their connection: 3 × PoolExhaustedError, never a hang`, async () => {
        const allHold = new Barrier(3);
        const allAsked = new Barrier(3); // no outer transaction ends (freeing its connection) before every inner call settled
        const results = await Promise.all(
          [0, 1, 2].map(() =>
            transaction(async () => {
              await accounts().count(); // this transaction holds its connection
              await allHold.wait();
              const body = () => transaction(async () => 'inner', { propagation: 'requires_new' });
              const outcome = await (inner === 'requires_new' ? body() : withAdvisoryLock(`edge-pool3-${Math.random()}`, body, { scope: 'session' })).then(
                (value) => ({ value, error: undefined as unknown }),
                (error: unknown) => ({ value: undefined, error }),
              );
              await allAsked.wait();
              return outcome;
            }),
          ),
        );
        for (const r of results) expectExhausted(r.error, 3, 'transaction()');
        // and the pool is whole again
        const again = await Promise.all([0, 1, 2].map(() => transaction(async () => accounts().count())));
        expect(again).to.have.length(3);
      });
    }

    it('control of the bound: with one outer transaction, requires_new at pool 3 gets its connection', async () => {
      const r = await transaction(() => transaction(async () => 'inner', { propagation: 'requires_new' }));
      expect(r).to.equal('inner');
    });
  },
  { poolSize: 3, install: { connectionTimeoutMs: BOUND_MS } },
);
