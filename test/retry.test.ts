import { expect } from 'chai';
import {
  DeadlockError,
  LockConfigError,
  LockTimeoutError,
  RetryOnConflict,
  SerializationError,
  StaleEntityError,
  currentManager,
  inTransaction,
  isRetryableConflict,
  retryOnConflict,
  transaction,
  type RetryInfo,
} from '../src';
import { race } from '../src/testing';
import { Counter, CounterService, PlainCounter } from './fixtures/counter';
import { describeEachBackend, sleep } from './support/suite';

class CustomConflict extends Error {}
class Other extends Error {}

describeEachBackend('@RetryOnConflict / retryOnConflict', [Counter, PlainCounter], (env) => {
  const counters = () => env.ds.getRepository(Counter);
  const fast = { backoffMs: 0 };

  it('retries a conflict in a fresh transaction each time, and counts the retries', async () => {
    const runners = new Set<unknown>();
    const retries: RetryInfo[] = [];
    let calls = 0;
    const result = await retryOnConflict(
      async (attempt) => {
        calls += 1;
        expect(attempt).to.equal(calls);
        expect(inTransaction()).to.equal(true);
        runners.add(currentManager().queryRunner);
        if (calls === 1) throw new StaleEntityError('stale');
        if (calls === 2) throw new DeadlockError('deadlock');
        if (calls === 3) throw new SerializationError('serialization');
        return 'done';
      },
      { attempts: 4, ...fast, onRetry: (info) => retries.push(info) },
    );
    expect(result).to.equal('done');
    expect(calls).to.equal(4);
    expect(runners.size, 'each attempt had its own transaction').to.equal(4);
    expect(retries.map((r) => [r.attempt, (r.error as Error).constructor.name])).to.deep.equal([
      [1, 'StaleEntityError'],
      [2, 'DeadlockError'],
      [3, 'SerializationError'],
    ]);
  });

  it('gives up after `attempts` (default 3) and rethrows the last conflict; other errors are not retried', async () => {
    let calls = 0;
    const err = await retryOnConflict(async () => {
      calls += 1;
      throw new StaleEntityError(`stale #${calls}`);
    }, fast).then(
      () => null,
      (e) => e,
    );
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(err.message).to.equal('stale #3');
    expect(calls).to.equal(3);

    calls = 0;
    const other = await retryOnConflict(async () => {
      calls += 1;
      throw new LockTimeoutError('timeout');
    }, fast).then(
      () => null,
      (e) => e,
    );
    expect(other).to.be.instanceOf(LockTimeoutError);
    expect(calls, 'a lock timeout is not a conflict').to.equal(1);
  });

  it('`on` extends the retried errors with classes and predicates', async () => {
    let calls = 0;
    await retryOnConflict(
      async () => {
        calls += 1;
        if (calls === 1) throw new CustomConflict('mine');
        if (calls === 2) throw Object.assign(new Error('by code'), { code: 'RETRY_ME' });
        if (calls === 3) throw new StaleEntityError('still a built-in');
      },
      { attempts: 5, ...fast, on: [CustomConflict, (e) => (e as { code?: string }).code === 'RETRY_ME'] },
    );
    expect(calls).to.equal(4);

    calls = 0;
    const err = await retryOnConflict(
      async () => {
        calls += 1;
        throw new Other('not listed');
      },
      { ...fast, on: [CustomConflict] },
    ).then(
      () => null,
      (e) => e,
    );
    expect(err).to.be.instanceOf(Other);
    expect(calls).to.equal(1);
    expect(isRetryableConflict(new CustomConflict(), [CustomConflict])).to.equal(true);
    expect(isRetryableConflict(new Other())).to.equal(false);
  });

  it('backs off exponentially with full jitter, capped by maxBackoffMs', async () => {
    const delays: number[] = [];
    const started = Date.now();
    await retryOnConflict(
      async (attempt) => {
        if (attempt < 6) throw new StaleEntityError('again');
      },
      { attempts: 6, backoffMs: 8, maxBackoffMs: 40, onRetry: (i) => delays.push(i.delayMs) },
    );
    const caps = [8, 16, 32, 40, 40];
    delays.forEach((d, i) => expect(d).to.be.within(0, caps[i]));
    expect(Date.now() - started).to.be.at.least(delays.reduce((a, b) => a + b, 0) - 5);
  });

  it('inside an open transaction it does not retry: it rethrows, saying to move it outside', async () => {
    const service = new CounterService(counters() as never, 0);
    const { id } = await counters().save(counters().create({ value: 0 }));
    let calls = 0;
    class Inner {
      @RetryOnConflict({ attempts: 5 })
      async bump(): Promise<void> {
        calls += 1;
        const c = await counters().findOneByOrFail({ id });
        // someone else commits a change meanwhile (second connection)
        await transaction(() => service.incrementOnce(id), { propagation: 'requires_new' });
        c.value += 100;
        await counters().save(c);
      }
    }
    const err = await transaction(() => new Inner().bump()).then(
      () => null,
      (e) => e,
    );
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(calls).to.equal(1);
    expect(err.message).to.contain('@RetryOnConflict on Inner.bump did not retry');
    expect(err.message).to.contain('outside the transaction');
    expect(err.details.retrySkipped).to.equal(true);
    expect((await counters().findOneByOrFail({ id })).value).to.equal(1);

    // the same method called outside any transaction retries and succeeds
    calls = 0;
    const fresh = await counters().save(counters().create({ value: 0 }));
    class Outer {
      @RetryOnConflict({ attempts: 5, backoffMs: 0 })
      async bump(): Promise<void> {
        calls += 1;
        const c = await counters().findOneByOrFail({ id: fresh.id });
        if (calls === 1) await transaction(() => service.incrementOnce(fresh.id), { propagation: 'requires_new' });
        c.value += 100;
        await counters().save(c);
      }
    }
    await new Outer().bump();
    expect(calls).to.equal(2);
    expect((await counters().findOneByOrFail({ id: fresh.id })).value).to.equal(101);
  });

  it('a serialization failure / deadlock from the database is retried (SERIALIZABLE increments are exact)', async () => {
    const plain = env.ds.getRepository(PlainCounter);
    const { id } = await plain.save(plain.create({ value: 0 }));
    const N = 8;
    let retries = 0;
    const results = await race(N, () =>
      retryOnConflict(
        async () => {
          const c = await plain.findOneByOrFail({ id });
          await sleep(5);
          c.value += 1;
          await plain.save(c);
        },
        { attempts: 60, backoffMs: 5, maxBackoffMs: 100, isolation: 'SERIALIZABLE', onRetry: () => (retries += 1) },
      ),
    );
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).to.deep.equal([]);
    expect((await plain.findOneByOrFail({ id })).value).to.equal(N);
    expect(retries, 'the database reported conflicts that were retried').to.be.greaterThan(0);
  });

  it('bad input: non-async method, bad attempts / backoff / on → LockConfigError', async () => {
    expect(() => {
      class Sync {
        @RetryOnConflict()
        run(): number {
          return 1;
        }
      }
      return Sync;
    }).to.throw(LockConfigError, /@RetryOnConflict on Sync\.run: the method must be async/);

    const bad: Array<[object, RegExp]> = [
      [{ attempts: 0 }, /attempts must be an integer ≥ 1/],
      [{ attempts: 2.5 }, /attempts must be an integer ≥ 1/],
      [{ attempts: '3' }, /attempts must be an integer ≥ 1/],
      [{ backoffMs: -1 }, /backoffMs must be a finite number ≥ 0/],
      [{ backoffMs: Number.NaN }, /backoffMs must be a finite number ≥ 0/],
      [{ maxBackoffMs: Infinity }, /maxBackoffMs must be a finite number ≥ 0/],
      [{ on: CustomConflict }, /on must be an array/],
      [{ on: ['StaleEntityError'] }, /on must be an array/],
    ];
    for (const [options, message] of bad) {
      expect(() => {
        class Service {
          @RetryOnConflict(options as never)
          async run(): Promise<void> {}
        }
        return Service;
      }, JSON.stringify(options)).to.throw(LockConfigError, message);
      const err = await retryOnConflict(async () => undefined, options as never).then(
        () => null,
        (e) => e,
      );
      expect(err, JSON.stringify(options)).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(message);
    }
  });
});
