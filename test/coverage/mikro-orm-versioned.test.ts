import { Entity, OptionalProps, PrimaryKey, Property } from '@mikro-orm/core';
import { expect } from 'chai';
import { StaleEntityError, transaction, Versioned } from '../../src';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { raceIncrements, rejection, sleep } from './support';

@Versioned()
@Entity({ tableName: 'cov_mk_ver_counters' })
class MkCovVersioned {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) value: number = 0;
  @Property({ type: 'integer', version: true }) version!: number;
  [OptionalProps]?: 'value' | 'version';
}

/** Control: MikroORM's own version property, no @Versioned (its batched flush checks with a separate SELECT). */
@Entity({ tableName: 'cov_mk_ver_plain_counters' })
class MkCovMikroVersion {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) value: number = 0;
  @Property({ type: 'integer', version: true }) version!: number;
  [OptionalProps]?: 'value' | 'version';
}

/** Control: no version at all. */
@Entity({ tableName: 'cov_mk_unversioned_counters' })
class MkCovUnversioned {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) value: number = 0;
  [OptionalProps]?: 'value';
}

type Counter = typeof MkCovVersioned | typeof MkCovMikroVersion | typeof MkCovUnversioned;

describeEachMikroBackend('coverage: @Versioned flushes', [MkCovVersioned, MkCovMikroVersion, MkCovUnversioned], (env) => {
  const N = 8;

  async function seed(E: Counter, n: number): Promise<number[]> {
    const em = env.orm.em.fork();
    const rows = Array.from({ length: n }, () => em.create(E as typeof MkCovVersioned, {}));
    await em.flush();
    return rows.map((r) => r.id);
  }
  const values = async (E: Counter, ids: number[]) =>
    (await env.orm.em.fork().find(E as typeof MkCovVersioned, { id: { $in: ids } }, { orderBy: { id: 'asc' } })).map((r) => r.value);

  /**
   * N workers on a barrier, each in its own transaction: load the rows, wait inside the window, add 1
   * to each, flush, wait again before committing. Returns the increments that committed and the rows' final values.
   */
  async function race(E: Counter, ids: number[]): Promise<{ committed: number; finals: number[]; stale: number }> {
    const failures = await raceIncrements(
      N,
      (body) => transaction(body, { dataSource: env.orm }),
      async () => {
        const em = env.orm.em;
        const rows = await em.find(E as typeof MkCovVersioned, { id: { $in: ids } });
        await sleep(40);
        for (const r of rows) r.value += 1;
        await em.flush();
        await sleep(40); // the transaction stays open after its UPDATE: the others' checks run before it commits
      },
    );
    const stale = failures.filter((f) => f instanceof StaleEntityError).length;
    expect(failures.length - stale, `other failures: ${failures.filter((f) => !(f instanceof StaleEntityError)).join('; ')}`).to.equal(0);
    return { committed: N - failures.length, finals: await values(E, ids), stale };
  }

  it('[coverage mikro-orm @Versioned em.flush(update) checked] concurrent load-change-flush of one row: every committed increment is kept; the control without a version loses some', async () => {
    const control = await race(MkCovUnversioned, await seed(MkCovUnversioned, 1));
    expect(control.finals[0], 'control').to.be.lessThan(control.committed);
    const checked = await race(MkCovVersioned, await seed(MkCovVersioned, 1));
    expect(checked.stale).to.be.greaterThan(0);
    expect(checked.finals).to.deep.equal([checked.committed]);
  });

  it('[coverage mikro-orm @Versioned em.flush(batch-update) checked] two rows per flush (one batched UPDATE): every committed increment is kept; MikroORM’s own version check alone loses some', async () => {
    const control = await race(MkCovMikroVersion, await seed(MkCovMikroVersion, 2));
    expect(Math.min(...control.finals), 'control').to.be.lessThan(control.committed);
    const checked = await race(MkCovVersioned, await seed(MkCovVersioned, 2));
    expect(checked.stale).to.be.greaterThan(0);
    expect(checked.finals).to.deep.equal([checked.committed, checked.committed]);
  });

  it('[coverage mikro-orm @Versioned em.remove+flush checked] removing two rows one of which changed since loaded: StaleEntityError, nothing deleted; MikroORM’s own check alone deletes both', async () => {
    const removeStale = async (E: Counter) => {
      const ids = await seed(E, 2);
      const mine = env.orm.em.fork();
      const both = await mine.find(E as typeof MkCovVersioned, { id: { $in: ids } });
      const other = env.orm.em.fork();
      (await other.findOneOrFail(E as typeof MkCovVersioned, ids[1])).value = 5;
      await other.flush(); // a concurrent change after mine loaded both
      both.forEach((c) => mine.remove(c));
      return { flush: mine.flush(), ids };
    };
    const control = await removeStale(MkCovMikroVersion);
    await control.flush;
    expect(await values(MkCovMikroVersion, control.ids), 'control').to.deep.equal([]);
    const checked = await removeStale(MkCovVersioned);
    expect(await rejection(checked.flush)).to.be.instanceOf(StaleEntityError);
    expect(await values(MkCovVersioned, checked.ids)).to.deep.equal([0, 5]);
  });
});
