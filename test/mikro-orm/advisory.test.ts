import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { expect } from 'chai';
import { advisoryLockExists, LockTimeoutError, transaction, withAdvisoryLock } from '../../src';
import { Barrier, race } from '../../src/testing';
import { MkJobCounter, MkSlot, SeedJob } from '../fixtures/mikro-advisory';
import { describeEachMikroBackend } from '../support/mikro-suite';

/** A worker process (test/fixtures/mikro-advisory-worker.ts): resolves once it is installed and ready. */
async function startWorker(backend: string) {
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', '-r', 'reflect-metadata', 'test/fixtures/mikro-advisory-worker.ts', backend],
    { env: process.env, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  /** The next message; rejects when the process exits first. */
  const next = async (): Promise<any> => {
    const line = await lines.next();
    if (line.done) throw new Error(`worker exited ${await exited}: ${err}`);
    return JSON.parse(line.value);
  };
  expect(await next()).to.deep.equal({ ready: true });
  return {
    child,
    exited,
    send: (command: object) => child.stdin!.write(`${JSON.stringify(command)}\n`),
    next,
  };
}

describeEachMikroBackend(
  'advisory locks on MikroORM',
  [MkJobCounter, MkSlot],
  (env) => {
    async function newCounter(): Promise<number> {
      const em = env.orm.em.fork();
      const c = em.create(MkJobCounter, { value: 0 });
      await em.flush();
      return c.id;
    }
    const valueOf = async (id: number) => (await env.orm.em.fork().findOneOrFail(MkJobCounter, id)).value;

    it('in one process: 20 concurrent @AdvisoryLock("seed-job") jobs are exact; the control loses increments', async () => {
      const job = new SeedJob(env.orm);
      const control = await newCounter();
      await race(20, () => job.runUnlocked(control));
      expect(await valueOf(control), 'the control must lose increments').to.be.lessThan(20);
      const locked = await newCounter();
      const results = await race(20, () => job.run(locked));
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).to.deep.equal([]);
      expect(await valueOf(locked)).to.equal(20);
    });

    it('across two processes: the seed job ×2×12 is exact with @AdvisoryLock; the control loses increments', async function () {
      this.timeout(120_000);
      const workers = await Promise.all([startWorker(env.name), startWorker(env.name)]);
      try {
        const run = async (mode: 'locked' | 'plain') => {
          const id = await newCounter();
          // the barrier: both processes are installed and get the command in the same tick
          for (const w of workers) w.send({ cmd: 'run', mode, counterId: id, jobs: 12, concurrency: 3 });
          expect(await Promise.all(workers.map((w) => w.next()))).to.deep.equal([{ done: true }, { done: true }]);
          return valueOf(id);
        };
        expect(await run('plain'), 'the control must lose increments').to.be.lessThan(24);
        expect(await run('locked')).to.equal(24);
        for (const w of workers) w.send({ cmd: 'quit' });
        expect(await Promise.all(workers.map((w) => w.exited))).to.deep.equal([0, 0]);
      } finally {
        for (const w of workers) if (w.child.exitCode === null) w.child.kill();
      }
    });

    it('withAdvisoryLock: a held key times out for another caller (timeoutMs), advisoryLockExists sees it', async () => {
      const held = new Barrier(2);
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const holder = withAdvisoryLock('report', async () => {
        await held.wait();
        await released;
      });
      await held.wait();
      try {
        expect(await advisoryLockExists('report')).to.equal(true);
        const err = await withAdvisoryLock('report', async () => 'ran', { timeoutMs: 200 }).then(
          () => null,
          (e) => e,
        );
        expect(err).to.be.instanceOf(LockTimeoutError);
      } finally {
        release();
        await holder;
      }
      expect(await advisoryLockExists('report')).to.equal(false);
    });

    it('@AdvisoryLock(entity => key) on an entity class: taken in the flush’s transaction, held until its commit, released after it (also for MikroORM’s implicit flush transactions)', async () => {
      const seed = env.orm.em.fork();
      const slot = seed.create(MkSlot, { owner: 'ann' });
      await seed.flush();
      env.log.length = 0;
      await transaction(async () => {
        const s = await env.orm.em.findOneOrFail(MkSlot, slot.id);
        s.n += 1;
        await env.orm.em.flush();
        expect(await advisoryLockExists(['slot', 'ann'])).to.equal(true); // held until commit
      });
      expect(await advisoryLockExists(['slot', 'ann'])).to.equal(false);
      const sent = env.log.splice(0).join('\n');
      expect(sent).to.match(/pg_advisory_xact_lock|GET_LOCK/i);
      const results = await race(8, async () => {
        const em = env.orm.em.fork();
        em.create(MkSlot, { owner: 'bob' });
        await em.flush();
      });
      expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
      expect(await env.orm.em.fork().count(MkSlot, { owner: 'bob' })).to.equal(8);
    });
  },
  { install: { namespace: 'mikro-tests' } },
);
