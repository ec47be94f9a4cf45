/**
 * The seed's optimistic locking (`lock_version`): concurrent increments of one counter each
 * load it, add one and save. TypeORM's own `@VersionColumn` only bumps the version and writes
 * the stale object back, so increments are lost (typeorm#2848). `@Versioned()` makes the
 * save conditional on the loaded version (StaleEntityError otherwise) and
 * `@RetryOnConflict()` re-runs the increment on the fresh row.
 */
import type { DataSource, Repository } from 'typeorm';
import { RetryOnConflict, transaction } from '../../src';
import { race } from '../../src/testing';
import { sleep, type Scenario } from '../scenario';
import { Counter, PlainCounter, type CounterColumns } from '../schema';

const INCREMENTS = 12;

class Hits {
  constructor(private readonly counters: Repository<CounterColumns>) {}

  private async body(id: number): Promise<void> {
    const counter = await this.counters.findOneByOrFail({ id });
    await sleep(5); // the work between read and write
    counter.value += 1;
    await this.counters.save(counter);
  }

  /** Control: a transaction, TypeORM's @VersionColumn, no check. */
  async increment(id: number): Promise<void> {
    await transaction(() => this.body(id));
  }

  /** On a @Versioned counter: a stale save throws, and the whole method runs again. */
  @RetryOnConflict({ attempts: 50, backoffMs: 5, maxBackoffMs: 40 })
  async incrementWithRetry(id: number): Promise<void> {
    await this.body(id);
  }
}

export const scenario: Scenario = {
  name: 'optimistic counter',
  strategy: '@Versioned + @RetryOnConflict',
  order: 40,
  async run(ds: DataSource, { locked }) {
    const counters = ds.getRepository<CounterColumns>(locked ? Counter : PlainCounter);
    const counter = await counters.save(counters.create({ name: 'hits', value: 0 }));
    const hits = new Hits(counters);
    const results = await race(INCREMENTS, () => (locked ? hits.incrementWithRetry(counter.id) : hits.increment(counter.id)));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw (failed[0] as PromiseRejectedResult).reason;
    const { value } = await counters.findOneByOrFail({ id: counter.id });
    const lost = INCREMENTS - value;
    return { anomalies: lost, detail: `${lost} of ${INCREMENTS} increments lost (value ${value})` };
  },
};
