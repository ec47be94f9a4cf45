/**
 * Lost updates under real contention: 4 Node processes × 16 connections (pool 16, 16 concurrent
 * loops each) increment one hot counter row 10,000 times in all, started on one barrier, for
 * every strategy on PostgreSQL and MariaDB (Redlock once, on PostgreSQL). Each strategy has a
 * control — the same worker code without the lock — that must lose increments.
 */
import { expect } from 'chai';
import { In } from 'typeorm';
import { BACKENDS } from '../support/backends';
import { unavailable } from '../support/redis-servers';
import { PlainVersionCounter, StressCounter, VersionedCounter } from './fixtures/entities';
import { CONCURRENCY, PROCESSES, redisNodes, session, type Session } from './support/shared';
import { summary, type CounterRun } from './support/summary';
import { runBatch, split, type BatchResult } from './support/workers';

/** Locked increments per strategy and database (STRESS_OPS overrides, for a quicker local run). */
const LOCKED_OPS = Number(process.env.STRESS_OPS ?? 10_000);
/** Increments of each control run (STRESS_CONTROL_OPS overrides). */
const CONTROL_OPS = Number(process.env.STRESS_CONTROL_OPS ?? 500);
/**
 * The optimistic run spreads its increments over this many rows, each checked exactly: on one
 * row, 64 contenders retry each other to a crawl (every success costs ~7 failed attempts).
 */
const OPTIMISTIC_ROWS = 8;
/** Backoff of the optimistic retries: with 64 contenders a longer wait wastes fewer attempts. */
const RETRY = { backoffMs: 50, maxBackoffMs: 1000 };

const LABELS: Record<string, string> = {
  pessimistic: '@Pessimistic / withLock',
  advisory: '@AdvisoryLock / withAdvisoryLock',
  optimistic: '@Versioned + @RetryOnConflict',
  redlock: 'Redlock.using + fencing token',
};

for (const backend of BACKENDS) {
  describe(`stress: lost updates, ${PROCESSES} processes × ${CONCURRENCY} connections [${backend}]`, function () {
    this.timeout(240_000);
    let s: Session;

    before(async function () {
      this.timeout(120_000);
      const opened = await session(backend);
      if (!opened) return this.skip();
      s = opened;
    });

    /** Resets the rows, runs `total` increments over the workers (one barrier), returns the batch and the rows' values. */
    async function run(strategy: string, locked: boolean, total: number, rows: number[], table: Function, extra: object = {}) {
      const repo = s.ds.getRepository(table as typeof StressCounter);
      await repo.remove(await repo.findBy({ id: In(rows) })); // (a delete by id of a @Versioned row would be refused: remove() is checked)
      await repo.insert(rows.map((id) => ({ id, value: 0 })));
      const counts = split(total, s.workers.length);
      const started = Date.now();
      const batch: BatchResult = await runBatch(s.workers, (w) => ({
        cmd: 'inc',
        strategy,
        locked,
        count: counts[w.index],
        concurrency: CONCURRENCY,
        rows,
        ...extra,
      }));
      const seconds = (Date.now() - started) / 1000;
      const values = new Map((await repo.findBy(rows.map((id) => ({ id })))).map((r) => [r.id, r.value]));
      const sum = [...values.values()].reduce((a, b) => a + b, 0);
      const record: CounterRun = { strategy: LABELS[strategy], backend, locked, ops: batch.ok, lost: batch.ok - sum, failed: batch.failed, seconds };
      summary.counterRuns.push(record);
      return { batch, values, sum, counts, record };
    }

    function expectAllDone(batch: BatchResult, total: number) {
      expect(batch.samples, 'errors of the workers').to.deep.equal([]);
      expect(batch.failed).to.equal(0);
      expect(batch.ok).to.equal(total);
    }

    async function control(strategy: string, rows: number[], table: Function, extra: object = {}) {
      const { batch, record } = await run(strategy, false, CONTROL_OPS, rows, table, extra);
      expectAllDone(batch, CONTROL_OPS);
      expect(record.lost, `the control without a lock must lose increments (${strategy}, ${backend})`).to.be.greaterThan(0);
    }

    it(`@Pessimistic / withLock (SELECT … FOR UPDATE): ${LOCKED_OPS} increments of one row, 0 lost; the control loses some`, async () => {
      await control('pessimistic', [1], StressCounter);
      const { batch, sum } = await run('pessimistic', true, LOCKED_OPS, [1], StressCounter);
      expectAllDone(batch, LOCKED_OPS);
      expect(sum).to.equal(LOCKED_OPS);
    });

    it(`@AdvisoryLock / withAdvisoryLock (transaction scope): ${LOCKED_OPS} increments of one row, 0 lost; the control loses some`, async () => {
      await control('advisory', [1], StressCounter);
      const { batch, sum } = await run('advisory', true, LOCKED_OPS, [1], StressCounter);
      expectAllDone(batch, LOCKED_OPS);
      expect(sum).to.equal(LOCKED_OPS);
    });

    it(`@Versioned + @RetryOnConflict / retryOnConflict: ${LOCKED_OPS} increments over ${OPTIMISTIC_ROWS} rows, each exact; the control loses some`, async () => {
      const rows = Array.from({ length: OPTIMISTIC_ROWS }, (_, i) => i + 1);
      await control('optimistic', rows, PlainVersionCounter, { retry: RETRY });
      const { batch, values, counts, record } = await run('optimistic', true, LOCKED_OPS, rows, VersionedCounter, { retry: RETRY });
      record.note = `${OPTIMISTIC_ROWS} rows, ${batch.attempts} attempts`;
      expectAllDone(batch, LOCKED_OPS);
      rows.forEach((id, r) => {
        // a worker's op i targets rows[i % rows.length]
        const expected = counts.reduce((n, c) => n + Math.floor(c / rows.length) + (r < c % rows.length ? 1 : 0), 0);
        expect(values.get(id), `row ${id}`).to.equal(expected);
      });
    });

    if (backend === 'postgres') {
      it(`Redlock.using() on 3 Redis nodes guarding a PostgreSQL increment (fenced write): ${LOCKED_OPS} increments of one row, 0 lost; the control loses some`, async function () {
        const nodes = await redisNodes((reason) => unavailable(this, reason));
        // 64 contenders poll for the lease: a longer delay costs less CPU, and one of the 63 waiters still polls within a few ms of a release
        const redis = { urls: nodes.urls, prefix: `ormlock-stress:${process.pid}:counter:`, ttlMs: 5000, retryDelayMs: 200, retryJitterMs: 100 };
        await control('redlock', [100], StressCounter, { redis });
        const { batch, sum } = await run('redlock', true, LOCKED_OPS, [100], StressCounter, { redis });
        expectAllDone(batch, LOCKED_OPS);
        expect(sum).to.equal(LOCKED_OPS);
      });
    }
  });
}
