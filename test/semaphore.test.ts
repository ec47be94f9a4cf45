import { expect } from 'chai';
import {
  advisoryLockExists,
  createFencingTable,
  dropFencingTable,
  currentLockSignal,
  LockConfigError,
  LockLostError,
  LockNotAvailableError,
  LockTimeoutError,
  Semaphore,
  transaction,
  withSemaphore,
} from '../src';
import { runWithLockSignal } from '../src/context/lock-signal';
import { race } from '../src/testing';
import { rejection } from './support/rejection';
import { startSemaphoreHolder } from './support/semaphore-holder';
import { concurrencyMeter } from './support/concurrency-meter';
import { describeEachBackend } from './support/suite';
import { statementsOf } from './support/query-log';
import { connectionGone } from './support/kill-connection';

let seq = 0;
const name = (what: string) => `${what}-${process.pid}-${++seq}`;

describeEachBackend('withSemaphore / @Semaphore (database)', [], (env) => {
  before(async () => {
    await createFencingTable(env.ds);
  });

  /** 50 racing calls of a 30 ms body, with or without the semaphore (permits 3). */
  async function run(locked: boolean, scope: 'transaction' | 'session' = 'transaction') {
    const sem = name('race');
    const meter = concurrencyMeter();
    const grants: Array<{ token: bigint; calledAt: number; bodyAt: number }> = [];
    const body = () => meter.run(30);
    const results = await race(50, async () => {
      const calledAt = performance.now();
      if (!locked) return body();
      await withSemaphore(
        sem,
        3,
        async (permit) => {
          grants.push({ token: permit.token, calledAt, bodyAt: performance.now() });
          expect(currentLockSignal()).to.equal(permit.signal);
          await body();
        },
        { scope },
      );
    });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    return { sem, maxInside: meter.max, grants };
  }

  const slotsHeld = async (sem: string, permits: number) => {
    let n = 0;
    for (let i = 0; i < permits; i++) if (await advisoryLockExists([`semaphore:${sem}`, i])) n++;
    return n;
  };

  it('control: without the semaphore more than 3 of 50 racing bodies run at once', async () => {
    expect((await run(false)).maxInside).to.be.above(3);
  });

  for (const scope of ['transaction', 'session'] as const) {
    it(`${scope} scope: at most 3 of 50 racing bodies at once; every permit released; tokens distinct and growing`, async function () {
      this.timeout(60_000);
      const { sem, maxInside, grants } = await run(true, scope);
      expect(maxInside).to.be.at.most(3);
      expect(maxInside, 'three run together').to.be.at.least(2);
      expect(grants).to.have.length(50);
      expect(new Set(grants.map((g) => g.token)).size, 'distinct tokens').to.equal(50);
      for (const a of grants) for (const b of grants) if (b.calledAt > a.bodyAt) expect(b.token > a.token, `${b.token} after ${a.token}`).to.equal(true);
      expect(await slotsHeld(sem, 3), 'no slot held afterwards').to.equal(0);
    });
  }

  it('opening its own transaction, one statement tries the slots and draws the token: BEGIN, that statement, COMMIT (MariaDB: and RELEASE_LOCK; BEGIN rides with the statement)', async () => {
    const sem = name('one-statement');
    const sent: string[] = [];
    const original = env.ds.createQueryRunner;
    env.ds.createQueryRunner = function (this: typeof env.ds, ...args: Parameters<typeof original>) {
      const qr = original.apply(this, args);
      const query = qr.query;
      qr.query = function (this: typeof qr, sql: string, ...rest: unknown[]) {
        sent.push(sql);
        return (query as (...a: unknown[]) => Promise<unknown>).call(this, sql, ...rest);
      } as typeof qr.query;
      return qr;
    } as typeof original;
    const tokens: bigint[] = [];
    try {
      for (let i = 0; i < 3; i++) await withSemaphore(sem, 3, (permit) => void tokens.push(permit.token));
    } finally {
      env.ds.createQueryRunner = original;
    }
    const statements = sent.flatMap(statementsOf);
    expect(statements, statements.join('\n')).to.have.length(3 * (env.name === 'postgres' ? 3 : 4));
    // BEGIN rides with the statement (docs/transactions.md): 2 round trips (MariaDB: 3, RELEASE_LOCK after COMMIT)
    expect(sent, sent.join('\n')).to.have.length(3 * (env.name === 'postgres' ? 2 : 3));
    expect(statements.filter((q) => /pg_try_advisory_xact_lock|GET_LOCK/.test(q) && /nextval|NEXTVAL/.test(q))).to.have.length(3);
    expect(tokens[1] > tokens[0] && tokens[2] > tokens[1], 'tokens grow').to.equal(true);
    expect(await slotsHeld(sem, 3), 'no slot held afterwards').to.equal(0);
  });

  it('the one statement takes the free slot when the others are held, whichever slot it starts at', async () => {
    const sem = name('first-free');
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const held: number[] = [];
    let holding!: () => void;
    const bothHeld = new Promise<void>((resolve) => (holding = resolve));
    const holders = [0, 1].map(() =>
      withSemaphore(sem, 3, async (permit) => {
        held.push(permit.slot);
        if (held.length === 2) holding();
        await released;
      }),
    );
    try {
      await bothHeld;
      const slots: number[] = [];
      for (let i = 0; i < 8; i++) await withSemaphore(sem, 3, (permit) => void slots.push(permit.slot), { timeoutMs: 0 });
      expect([...new Set(slots)], `held ${held}`).to.deep.equal([[0, 1, 2].find((s) => !held.includes(s))]);
    } finally {
      release();
      await Promise.all(holders);
    }
  });

  it("the permit's connection killed mid-body: its signal aborts and withSemaphore rejects with LockLostError", async function () {
    this.timeout(30_000);
    const sem = name('killed');
    const pg = env.name === 'postgres';
    let reportPid!: (pid: number) => void;
    const pidKnown = new Promise<number>((resolve) => (reportPid = resolve));
    let aborted = false;
    let reason: unknown;
    const call = withSemaphore(sem, 3, async (permit) => {
      const [row] = await env.ds.query(pg ? 'SELECT pg_backend_pid() AS pid' : 'SELECT CONNECTION_ID() AS pid');
      reportPid(Number(row.pid));
      await new Promise<void>((resolve) => permit.signal.addEventListener('abort', () => resolve(), { once: true }));
      aborted = permit.signal.aborted;
      reason = permit.signal.reason;
    });
    const rejected = rejection(call); // handled from the start: the call rejects while the killer is still busy
    const pid = await pidKnown;
    const killer = env.ds.createQueryRunner();
    try {
      await killer.query(pg ? 'SELECT pg_terminate_backend($1)' : `KILL ${pid}`, pg ? [pid] : []);
    } finally {
      await killer.release();
    }
    const error = await rejected;
    expect(error?.constructor.name, String(error)).to.equal('LockLostError');
    // the error names the permit (not only "the transaction's connection"), on the signal and on the call
    expect(error.message).to.match(new RegExp(`withSemaphore\\("${sem}"\\): the connection holding semaphore "${sem}" slot [0-2] was lost`));
    expect(aborted, 'the body saw its signal abort').to.equal(true);
    expect(reason, "the signal's reason is the error the call rejects with").to.equal(error);
    await connectionGone(env.name, pid); // the killed session frees its slot as it ends, not when KILL returns
    expect(await slotsHeld(sem, 3), 'no slot held afterwards').to.equal(0);
  });

  it('timeoutMs: 0 when all permits are held: LockNotAvailableError, or undefined with onTimeout skip; a wait: LockTimeoutError', async () => {
    const sem = name('full');
    let release!: () => void;
    const holding = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const holder = withSemaphore(sem, 1, async () => {
      entered();
      await holding;
    });
    await inside;
    const none = await rejection(withSemaphore(sem, 1, async () => 1, { timeoutMs: 0 }));
    expect(none).to.be.instanceOf(LockNotAvailableError);
    expect(none.message).to.match(/all 1 permit\(s\) of semaphore .* are held/);
    expect(await withSemaphore(sem, 1, async () => 1, { timeoutMs: 0, onTimeout: 'skip' })).to.equal(undefined);
    const started = Date.now();
    const late = await rejection(withSemaphore(sem, 1, async () => 1, { timeoutMs: 150 }));
    expect(late).to.be.instanceOf(LockTimeoutError);
    expect(Date.now() - started).to.be.within(140, 2000);
    release();
    await holder;
    expect(await withSemaphore(sem, 1, async () => 'free again', { timeoutMs: 0 })).to.equal('free again');
  });

  it('a lost enclosing lock scope passes to the permit as it is: its signal aborts with that reason and the call rejects with it', async () => {
    const sem = name('outer');
    const outer = new AbortController();
    const lostOuter = new LockLostError('the enclosing lease was lost');
    let reason: unknown;
    const call = runWithLockSignal(outer.signal, () =>
      withSemaphore(sem, 3, async (permit) => {
        setTimeout(() => outer.abort(lostOuter), 20);
        await new Promise<void>((resolve) => permit.signal.addEventListener('abort', () => resolve(), { once: true }));
        reason = permit.signal.reason;
      }),
    );
    expect(await rejection(call)).to.equal(lostOuter);
    expect(reason).to.equal(lostOuter);
    expect(await slotsHeld(sem, 3), 'no slot held afterwards').to.equal(0);
  });

  it('a body that throws (also synchronously, or a LockLostError) rolls back, rejects with its error and frees the slot', async () => {
    const sem = name('throws');
    const boom = new Error('boom');
    expect(
      await rejection(
        withSemaphore(sem, 2, () => {
          throw boom;
        }),
      ),
    ).to.equal(boom);
    expect(
      await rejection(
        withSemaphore(sem, 2, async () => {
          throw boom;
        }),
      ),
    ).to.equal(boom);
    const lost = new LockLostError('gone');
    let aborted: unknown;
    expect(
      await rejection(
        withSemaphore(sem, 2, async (permit) => {
          permit.signal.addEventListener('abort', () => (aborted = permit.signal.reason), { once: true });
          throw lost;
        }),
      ),
    ).to.equal(lost);
    expect(aborted, 'a LockLostError thrown by the body aborts its signal').to.equal(lost);
    expect(await slotsHeld(sem, 2), 'no slot held afterwards').to.equal(0);
    expect(await withSemaphore(sem, 2, () => 'sync result')).to.equal('sync result');
  });

  it('in transaction scope inside a transaction, the permit is held until that transaction ends', async () => {
    const sem = name('tx');
    await transaction(
      async () => {
        await withSemaphore(sem, 1, async () => undefined);
        expect(await slotsHeld(sem, 1)).to.equal(1);
      },
      { dataSource: env.ds },
    );
    expect(await slotsHeld(sem, 1)).to.equal(0);
  });

  it('@Semaphore runs the method under a permit, and rejects a non-async method at class definition', async () => {
    const sem = name('decorated');
    class Reports {
      meter = concurrencyMeter();
      @Semaphore(sem, 2)
      async export(id: number): Promise<number> {
        expect(currentLockSignal()).to.not.equal(undefined);
        await this.meter.run(20);
        return id;
      }
    }
    const reports = new Reports();
    const results = await race(10, (i) => reports.export(i));
    expect(results.map((r) => (r as PromiseFulfilledResult<number>).value)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(reports.meter.max).to.be.within(1, 2);
    expect(() => {
      class Bad {
        @Semaphore(sem, 2)
        sync(): number {
          return 1;
        }
      }
      return Bad;
    }).to.throw(LockConfigError, /@Semaphore on Bad.sync: the method must be async/);
  });

  it('a holder killed with SIGKILL frees its permit at once', async function () {
    this.timeout(90_000); // starting the holder (ts-node) takes 10-15 s on a loaded machine
    const sem = name('killed');
    const config = { backend: env.name, name: sem, permits: 1, scope: 'transaction' };
    const child = await startSemaphoreHolder(config);
    expect(await rejection(withSemaphore(sem, 1, async () => 1, { timeoutMs: 0 }))).to.be.instanceOf(LockNotAvailableError);
    const killedAt = Date.now();
    child.kill('SIGKILL');
    const result = await withSemaphore(sem, 1, async () => 'mine', { timeoutMs: 5000 });
    expect(result).to.equal('mine');
    expect(Date.now() - killedAt, 'freed when the connection closed, not after a TTL').to.be.below(1500);
  });

  it('rejects bad permits, names and options with LockConfigError naming the semaphore', async () => {
    for (const permits of [0, -1, 1.5, NaN, '3', undefined] as any[]) {
      const err = await rejection(withSemaphore('reports', permits, async () => 1));
      expect(err, `permits ${String(permits)}`).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(/withSemaphore\("reports"\): permits of semaphore "reports" must be a positive integer/);
    }
    for (const bad of ['', 5, null, {}, '\ud800'] as any[]) {
      expect(await rejection(withSemaphore(bad, 3, async () => 1)), `name ${JSON.stringify(bad)}`).to.be.instanceOf(LockConfigError);
    }
    expect((await rejection(withSemaphore('reports', 3, async () => 1, { shared: true } as any))).message).to.match(/unknown option 'shared'/);
    expect((await rejection(withSemaphore('reports', 3, async () => 1, { scope: 'forever' } as any))).message).to.match(/scope 'forever'/);
    expect(await rejection(withSemaphore('reports', 3, async () => 1, { timeoutMs: -1 }))).to.be.instanceOf(LockConfigError);
    expect(await rejection(withSemaphore('reports', 3, 'nope' as any))).to.be.instanceOf(LockConfigError);
    expect((await rejection(withSemaphore('reports', 3, async () => 1, { onTimeout: 'wait' } as any))).message).to.match(/onTimeout 'wait'/);
    expect((await rejection(withSemaphore('reports', 3, async () => 1, { dataSource: 'default' } as any))).message).to.match(/dataSource must be/);
    expect((await rejection(withSemaphore('reports', 3, async () => 1, [] as any))).message).to.match(/options must be an object/);
    // options need not be an object literal: a null-prototype object is fine
    const bare = Object.assign(Object.create(null), { timeoutMs: 0 });
    expect(await withSemaphore(name('bare'), 3, async () => 'ok', bare)).to.equal('ok');
    expect(() => Semaphore('reports', 0)({}, 'm', { value: async () => 1 })).to.throw(LockConfigError, /@Semaphore on Object.m: permits/);
  });

  it('without the token sequence: LockConfigError saying to call createFencingTable', async () => {
    await dropFencingTable(env.ds);
    try {
      const err = await rejection(withSemaphore(name('no-seq'), 2, async () => 1));
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.match(/token sequence "ormlock_fencing_seq" does not exist; create it once with `await createFencingTable\(dataSource\)`/);
    } finally {
      await createFencingTable(env.ds);
    }
  });
});
