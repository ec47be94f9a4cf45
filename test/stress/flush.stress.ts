/**
 * Every Redis node loses its data mid-run. 4 worker processes × 16 loops increment one hot
 * counter under `Redlock.using()` on three Redis nodes owned by this file, and all three are
 * FLUSHALLed four times during the run (at 15, 35, 55 and 75 % of it): every lease held at that
 * instant is gone, and the next waiter is granted the key while the old holder is still in its
 * body.
 *
 * - locked (`fencing: { dataSource }`, `{ transaction: true }`, writes guarded by
 *   `fence < token`): every committed increment is in the counter (0 lost), the committed tokens
 *   strictly increase in commit order across the flushes, the leases the flushes took away fail
 *   with LockLostError, and no write of a failed operation survives (its ledger row, written in
 *   the same transaction, is absent);
 * - control 1 (the Redis-held token default, same guard, a new Redlock per operation — a process
 *   started after the flush, Kleppmann's scenario): after a flush the tokens go back, and the guard
 *   refuses the new holders' writes;
 * - control 2 (database tokens, no transaction, no guard): writes under lost leases survive
 *   (lost increments).
 */
import { expect } from 'chai';
import type Redis from 'ioredis';
import { createFencingTable } from '../../src';
import { BACKENDS } from '../support/backends';
import { startRedisNodes, unavailable, type RedisNodes } from '../support/redis-servers';
import { FenceEntry, StressCounter } from './fixtures/entities';
import { CONCURRENCY, replaceDeadWorkers, session, type Session } from './support/shared';
import { summary } from './support/summary';
import { runBatch, split, type BatchResult } from './support/workers';

/** Increments per run (STRESS_FLUSH_OPS overrides). */
const OPS = Number(process.env.STRESS_FLUSH_OPS ?? 1_000);
const FLUSH_AT = [0.15, 0.35, 0.55, 0.75];
/** The read→write window of the body, ms: a flushed holder is almost always inside it. */
const HOLD_MS = 4;

interface RunConfig {
  name: string;
  fencing: boolean;
  transaction: boolean;
  guard: boolean;
  /** A new Redlock per operation (it has seen no token yet), instead of one per worker process. */
  fresh?: boolean;
}

describe('stress: every Redis node flushed mid-run (FLUSHALL on all three, four times)', function () {
  this.timeout(300_000);
  let nodes: RedisNodes;
  let admin: Redis[];

  before(async function () {
    this.timeout(60_000);
    nodes = await startRedisNodes((reason) => unavailable(this, reason), { ownAll: true });
    admin = nodes.clients();
    await nodes.waitReady(admin);
  });
  after(async () => {
    await nodes?.close();
  });

  for (const backend of BACKENDS) {
    describe(`[${backend}]`, () => {
      let s: Session;
      let row = 300 + BACKENDS.indexOf(backend) * 10;

      before(async function () {
        this.timeout(120_000);
        const opened = await session(backend);
        if (!opened) return this.skip();
        s = opened;
        await createFencingTable(s.ds);
      });

      /** One run: a fresh counter row, flushes at FLUSH_AT of the progress. */
      async function run(
        config: RunConfig,
      ): Promise<{ batch: BatchResult; id: number; value: number; flushes: number[]; seconds: number; entries: FenceEntry[] }> {
        await replaceDeadWorkers(s);
        const id = ++row;
        const counters = s.ds.getRepository(StressCounter);
        await counters.delete([id]);
        await counters.insert({ id, value: 0 });
        const tag = `${config.name}-${backend}`.slice(0, 20);
        await s.ds.getRepository(FenceEntry).delete({ run: tag });
        const redis = {
          urls: nodes.urls,
          prefix: `ormlock-stress:${process.pid}:flush:${tag}:`,
          ttlMs: 2000,
          retryDelayMs: 2,
          retryJitterMs: 2,
          fencing: config.fencing,
          transaction: config.transaction,
          guard: config.guard,
          holdMs: HOLD_MS,
          run: tag,
          fresh: config.fresh === true,
        };
        const total = () => s.workers.reduce((n, w) => n + w.progress, 0);
        const flushes: number[] = [];
        let flushing: Promise<void> | undefined;
        const onProgress = (): void => {
          if (flushing || flushes.length >= FLUSH_AT.length || total() < OPS * FLUSH_AT[flushes.length]) return;
          const at = total();
          flushing = Promise.all(admin.map((c) => c.flushall())).then(() => {
            flushes.push(at);
            flushing = undefined;
          });
        };
        for (const w of s.workers) w.onProgress = onProgress;
        const started = Date.now();
        let batch: BatchResult;
        try {
          batch = await runBatch(s.workers, (w) => ({
            cmd: 'inc',
            strategy: 'redlock',
            locked: true,
            count: split(OPS, s.workers.length)[w.index],
            concurrency: CONCURRENCY,
            rows: [id],
            redis,
            progressEvery: 5,
          }));
          await flushing;
        } finally {
          for (const w of s.workers) w.onProgress = undefined;
        }
        const seconds = (Date.now() - started) / 1000;
        const value = (await counters.findOneByOrFail({ id })).value;
        const entries = await s.ds.getRepository(FenceEntry).find({ where: { run: tag }, order: { value: 'ASC', id: 'ASC' } });
        return { batch, id, value, flushes, seconds, entries };
      }

      it(`locked (fencing in ${backend}, transaction: true): 0 lost, tokens strictly increasing across the flushes, no write of a lost lease survives`, async () => {
        const { batch, value, flushes, seconds, entries } = await run({ name: 'locked', fencing: true, transaction: true, guard: true });
        const failedOps = new Set(batch.perWorker.flatMap((d: any, i: number) => (d.failedOps as number[]).map((op) => `${s.workers[i].pid}:${op}`)));
        const survivors = entries.filter((e) => failedOps.has(`${e.pid}:${e.op}`));
        const tokens = entries.map((e) => BigInt(e.token));
        const backwards = tokens.filter((t, i) => i > 0 && !(t > tokens[i - 1])).length;
        const onlyLost = Object.keys(batch.errors).every((name) => name === 'LockLostError');
        const survived =
          flushes.length === FLUSH_AT.length &&
          value === batch.ok &&
          entries.length === batch.ok &&
          survivors.length === 0 &&
          backwards === 0 &&
          onlyLost &&
          batch.failed > 0;
        summary.faults.push({
          kind: 'Redlock (3 nodes), every node FLUSHALLed 4× mid-run: fencing in the database + transaction: true',
          backend,
          survived,
          detail:
            `flushed at ${flushes.join(', ')} of ${OPS}; ${batch.ok} committed, ${batch.failed} lost leases (${JSON.stringify(batch.errors)}) rolled back, ` +
            `${survivors.length} of their writes survived; counter ${value}; committed tokens ${tokens[0]}…${tokens[tokens.length - 1]}, ${backwards} out of order`,
        });
        summary.counterRuns.push({
          strategy: 'Redlock fencing: db + transaction',
          backend,
          locked: true,
          ops: batch.ok,
          lost: batch.ok - value,
          failed: batch.failed,
          seconds,
          note: 'all 3 nodes flushed 4×',
        });
        expect(flushes, 'every flush happened mid-run').to.have.length(FLUSH_AT.length);
        for (const at of flushes) expect(at).to.be.below(OPS);
        expect(batch.ok + batch.failed).to.equal(OPS);
        expect(onlyLost, `only lost leases fail: ${JSON.stringify(batch.samples)}`).to.equal(true);
        expect(batch.failed, 'a flush took a lease away from a holder in its body').to.be.greaterThan(0);
        expect(value, 'no committed increment lost').to.equal(batch.ok);
        expect(entries, 'one ledger row per committed increment').to.have.length(batch.ok);
        expect(
          survivors.map((e) => `${e.pid}:${e.op}`),
          'writes of operations that failed',
        ).to.deep.equal([]);
        expect(entries.map((e) => e.value)).to.deep.equal(entries.map((_, i) => i + 1));
        expect(backwards, `tokens in commit order: ${tokens.slice(0, 20).join(', ')}…`).to.equal(0);
      });

      it('control 1: the Redis-held tokens go back after the flushes, and the fence guard refuses the new holders’ writes', async () => {
        const { batch, flushes, seconds } = await run({ name: 'ctl-tokens', fencing: false, transaction: true, guard: true, fresh: true });
        const refused = batch.perWorker.reduce((n: number, d: any) => n + (d.refused ?? 0), 0);
        // (not a lost-update control: its anomaly is refused writes, so it goes to the faults table only)
        summary.faults.push({
          kind: 'control: Redis-held fencing counters, every node FLUSHALLed 4× mid-run',
          backend,
          survived: batch.failed > 0 && refused > 0,
          detail: `flushed at ${flushes.join(', ')}; ${batch.failed} operations failed in ${seconds.toFixed(1)} s, ${refused} of them writes refused for a token that went back (${batch.failed - refused} lost leases)`,
        });
        expect(flushes).to.have.length(FLUSH_AT.length);
        expect(refused, `tokens went back after a flush: ${JSON.stringify(batch.samples)}`).to.be.greaterThan(0);
      });

      it('control 2: without the transaction and the guard, writes under lost leases survive (lost increments)', async () => {
        const { batch, value, flushes, seconds, entries } = await run({ name: 'ctl-tx', fencing: true, transaction: false, guard: false });
        // using() rejects an operation whose lease was lost in its body; without a transaction its write stays
        const failedOps = new Set(batch.perWorker.flatMap((d: any, i: number) => (d.failedOps as number[]).map((op) => `${s.workers[i].pid}:${op}`)));
        const survivors = entries.filter((e) => failedOps.has(`${e.pid}:${e.op}`)).length;
        summary.counterRuns.push({
          strategy: 'Redlock, no transaction (control)',
          backend,
          locked: false,
          ops: batch.ok,
          lost: batch.ok - value,
          failed: batch.failed,
          seconds,
          note: `all 3 nodes flushed 4×; ${survivors} writes of failed operations survived`,
        });
        expect(flushes).to.have.length(FLUSH_AT.length);
        expect(
          { survivors, lostIncrements: value < batch.ok },
          `${batch.ok} increments reported done, counter ${value}: a write of a failed operation survived or an increment was lost`,
        ).to.not.deep.equal({ survivors: 0, lostIncrements: false });
      });
    });
  }
});
