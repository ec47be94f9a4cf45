/**
 * The seed's optimistic locking on MikroORM, where it is weakest: two counters changed in one flush
 * are one batched UPDATE, which MikroORM checks with a separate SELECT and then writes by primary
 * key only (mikro-orm #1703), so concurrent increments are lost even with a version property and
 * retries. `@Versioned()` puts the version into that UPDATE's WHERE; `retryOnConflict` re-runs the
 * increment on the fresh rows.
 */
import type { MikroORM } from '@mikro-orm/core';
import { retryOnConflict } from '../../../src';
import { race } from '../../../src/testing';
import { sleep, type Scenario } from '../../scenario';
import { MCounter, MPlainCounter } from '../schema';

const INCREMENTS = 12;

export const scenario: Scenario = {
  name: 'optimistic counter',
  strategy: '@Versioned + @RetryOnConflict',
  order: 40,
  async run(target, { locked }) {
    const orm = target as unknown as MikroORM;
    const cls = (locked ? MCounter : MPlainCounter) as typeof MCounter;
    const seed = orm.em.fork();
    const pair = [seed.create(cls, { name: 'hits' }), seed.create(cls, { name: 'visits' })];
    await seed.flush();
    const ids = pair.map((c) => c.id);
    const results = await race(INCREMENTS, () =>
      retryOnConflict(
        async () => {
          const counters = await orm.em.find(cls, { id: { $in: ids } });
          await sleep(5); // the work between read and write
          for (const c of counters) c.value += 1;
          await orm.em.flush(); // one batched UPDATE of both rows
        },
        { attempts: 100, backoffMs: 2 },
      ),
    );
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw (failed[0] as PromiseRejectedResult).reason;
    const values = (await orm.em.fork().find(cls, { id: { $in: ids } })).map((c) => c.value);
    const lost = values.reduce((sum, v) => sum + (INCREMENTS - v), 0);
    return { anomalies: lost, detail: `${lost} of ${2 * INCREMENTS} increments lost (values ${values.join(', ')})` };
  },
};
