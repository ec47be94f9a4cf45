/**
 * Compositions: strategies combined as user code combines them — siblings on one pinned
 * connection, locks dropped by a savepoint rollback, a session lock failing inside a transaction,
 * a time limit outliving its call, isolation inside a running transaction, a sibling's time limit,
 * a connection given back in a transaction. Each case has its control where one applies.
 */
import { expect } from 'chai';
import {
  LockConfigError,
  LockNotAvailableError,
  Transactional,
  advisoryLockExists,
  currentManager,
  lock,
  transaction,
  withAdvisoryLock,
  withAdvisoryLocks,
  withLock,
} from '../src';
import { runInFrame } from '../src/context/store';
import { EDGE_ENTITIES, EdgeAccount, sleep } from './fixtures/edges';
import { connectionCountSql } from './support/kill-connection';
import { describeEachBackend } from './support/suite';

const outside = <T>(fn: () => Promise<T>) => runInFrame({ txs: new Map(), values: new Map() }, fn);
const boom = () => new Error('boom');

describeEachBackend('compositions', EDGE_ENTITIES, (env) => {
  const accounts = () => env.ds.getRepository(EdgeAccount);
  const names = async (prefix: string) =>
    (
      await outside(() =>
        accounts()
          .createQueryBuilder('a')
          .where('a.name LIKE :p', { p: `${prefix}%` })
          .getMany(),
      )
    )
      .map((a) => a.name)
      .sort();
  const insert = (name: string) => currentManager().getRepository(EdgeAccount).save({ name, credits: 1 });
  /** A second connection's try: true when it could take `key` (then lets it go). */
  const freeElsewhere = async (key: string) => (await outside(() => withAdvisoryLock(key, () => true, { timeoutMs: 0, onTimeout: 'skip' }))) === true;
  /** Another connection holds `key` for `ms`: resolves once it does, with `done`, the promise of its end. */
  const heldElsewhere = async (key: string, ms: number) => {
    let holds!: () => void;
    const held = new Promise<void>((r) => (holds = r));
    const done = outside(() =>
      withAdvisoryLock(
        key,
        async () => {
          holds();
          await sleep(ms);
        },
        { scope: 'session' },
      ),
    );
    await held;
    return { done };
  };

  describe('siblings on one pinned connection', () => {
    it('inside a session lock, Promise.all of two transaction(): they run one after another; A commits, B rolls back alone', async () => {
      const order: string[] = [];
      const results = await withAdvisoryLock(
        'cmp-pin-1',
        () =>
          Promise.allSettled([
            transaction(async () => {
              order.push('A+');
              await insert('s1-A');
              await sleep(50);
              order.push('A-');
            }),
            transaction(async () => {
              order.push('B+');
              await insert('s1-B');
              throw boom();
            }),
          ]),
        { scope: 'session' },
      );
      expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected']);
      expect(order).to.deep.equal(['A+', 'A-', 'B+']);
      expect(await names('s1-')).to.deep.equal(['s1-A']);
      // the connection went back clean: later pooled work runs outside any transaction
      const later = await Promise.allSettled(Array.from({ length: 24 }, () => outside(() => accounts().count())));
      expect(later.filter((r) => r.status === 'rejected')).to.have.length(0);
    });

    it('a QueryRunner named as { dataSource }: two sibling transaction() never share one transaction', async () => {
      const qr = env.ds.createQueryRunner();
      await qr.connect();
      try {
        const results = await Promise.allSettled([
          transaction(
            async () => {
              await insert('s2-A');
              await sleep(50);
            },
            { dataSource: qr },
          ),
          transaction(
            async () => {
              await insert('s2-B');
              throw boom();
            },
            { dataSource: qr },
          ),
        ]);
        expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected']);
        expect(await names('s2-')).to.deep.equal(['s2-A']);
      } finally {
        await qr.release();
      }
    });

    it('control: without ormlock, two transactions started on one QueryRunner at once collide (TypeORM nests or fails)', async () => {
      const qr = env.ds.createQueryRunner();
      await qr.connect();
      try {
        await qr.startTransaction();
        await qr.startTransaction(); // the second "transaction" is a savepoint of the first
        expect((qr as unknown as { transactionDepth: number }).transactionDepth).to.equal(2);
        await qr.rollbackTransaction();
        await qr.rollbackTransaction();
      } finally {
        await qr.release();
      }
    });
  });

  describe('a savepoint rollback', () => {
    it('a lock taken in a rolled-back nested manager.transaction() is taken again by the next call (what the database dropped, the model drops)', async () => {
      let second: boolean | undefined;
      let elsewhere: boolean | undefined;
      await transaction(async () => {
        await currentManager()
          .transaction(async () => {
            await withAdvisoryLock('cmp-sp-1', async () => undefined);
            throw boom();
          })
          .catch(() => undefined);
        await withAdvisoryLock('cmp-sp-1', async ({ acquired }) => {
          second = acquired;
          elsewhere = await freeElsewhere('cmp-sp-1');
        });
      });
      // PostgreSQL dropped the key with the savepoint: the call must take it again. MariaDB kept it (GET_LOCK is a session lock).
      if (env.handle.dialect.capabilities.rollbackToSavepointReleasesLocks) expect(second, 'taken again').to.equal(true);
      expect(elsewhere, 'another connection can take the key while the body runs').to.equal(false);
      expect(await advisoryLockExists('cmp-sp-1')).to.equal(false);
    });
  });

  describe('a session lock failing inside a transaction', () => {
    it('a multi-key session lock cancelled on its second key leaves no key held by the pooled connection', async function () {
      this.timeout(20_000);
      let release!: () => void;
      const holding = new Promise<void>((r) => (release = r));
      let holds!: () => void;
      const held = new Promise<void>((r) => (holds = r));
      const holder = outside(() =>
        withAdvisoryLock(
          'cmp-ss-b',
          async () => {
            holds();
            await holding;
          },
          { scope: 'session' },
        ),
      );
      await held;
      const attempt = transaction(async () => {
        const [row] = await currentManager().query(env.handle.dialect.connectionIdSql);
        const id = String(row.connectionId);
        const cancel = (async () => {
          await sleep(400);
          const sql = env.name === 'postgres' ? `SELECT pg_cancel_backend(${Number(id)})` : `KILL QUERY ${Number(id)}`;
          await outside(() => env.ds.query(sql));
        })();
        try {
          return await withAdvisoryLocks(['cmp-ss-a', 'cmp-ss-b'], async () => 'ran', { scope: 'session' });
        } finally {
          await cancel;
        }
      });
      const outcome = await attempt.then(
        (v) => v,
        (e: Error) => e,
      );
      release();
      await holder;
      expect(outcome, 'the cancelled call did not run its body').to.not.equal('ran');
      expect(await freeElsewhere('cmp-ss-a'), 'the first key was released').to.equal(true);
      expect(await advisoryLockExists('cmp-ss-a')).to.equal(false);
    });
  });

  describe('a time limit lasts for its call', () => {
    it('lock(row, { timeoutMs: 200 }), then withAdvisoryLock(k) without a limit in the same transaction waits for k instead of timing out', async function () {
      this.timeout(20_000);
      const row = await accounts().save(accounts().create({ name: 'tl-row', credits: 1 }));
      const holder = (await heldElsewhere('cmp-tl-1', 700)).done;
      const started = Date.now();
      const ran = await transaction(async () => {
        await lock(row, { timeoutMs: 200 });
        return withAdvisoryLock('cmp-tl-1', async () => true);
      });
      await holder;
      expect(ran).to.equal(true);
      expect(Date.now() - started, 'it waited for the holder').to.be.greaterThan(400);
    });

    it('control: a limit given to the advisory call itself still applies', async function () {
      this.timeout(20_000);
      const holder = (await heldElsewhere('cmp-tl-2', 700)).done;
      const outcome = await transaction(() => withAdvisoryLock('cmp-tl-2', async () => true, { timeoutMs: 100 })).then(
        (v) => v,
        (e: Error) => e,
      );
      await holder;
      expect(outcome).to.be.instanceOf(Error);
    });
  });

  describe('isolation inside a running transaction', () => {
    class Reports {
      @Transactional({ isolation: 'SERIALIZABLE' })
      async run() {
        return 'ran';
      }
    }

    it('asking for a stronger level than the running (default) one is a LockConfigError: transaction(), @Transactional, withLock', async () => {
      const row = await accounts().save(accounts().create({ name: 'iso-row', credits: 1 }));
      await transaction(async () => {
        await expectConfigError(transaction(async () => 'ran', { isolation: 'SERIALIZABLE' }));
        await expectConfigError(new Reports().run());
        await expectConfigError(withLock(row, async () => 'ran', { isolation: 'SERIALIZABLE' }));
      });
    });

    it('also inside dataSource.transaction(cb)', async () => {
      await env.ds.transaction(async () => {
        await expectConfigError(transaction(async () => 'ran', { isolation: 'SERIALIZABLE' }));
      });
    });

    it('the same level joins (the server default inside a default transaction); another one is refused', async () => {
      const inner = await transaction(
        () =>
          transaction(async () => 'joined', { isolation: 'READ COMMITTED' }).then(
            () => undefined,
            (e) => e,
          ),
        { isolation: 'SERIALIZABLE' },
      );
      expect(inner).to.be.instanceOf(LockConfigError);
      const dflt = env.handle.dialect.capabilities.defaultIsolation;
      expect(await transaction(() => transaction(async () => 'joined', { isolation: dflt }))).to.equal('joined');
      expect(await env.ds.transaction('SERIALIZABLE', () => transaction(async () => 'joined', { isolation: 'SERIALIZABLE' }))).to.equal('joined');
    });

    it('a QueryRunner the user began (startTransaction) and names as { dataSource }: its level counts, the server default included', async () => {
      for (const begun of [undefined, 'READ COMMITTED'] as const) {
        const qr = env.ds.createQueryRunner();
        await qr.connect();
        try {
          await qr.startTransaction(begun);
          await expectConfigError(transaction(async () => 'ran', { dataSource: qr, isolation: 'SERIALIZABLE' }));
          expect(await transaction(async () => 'joined', { dataSource: qr, isolation: begun ?? env.handle.dialect.capabilities.defaultIsolation })).to.equal(
            'joined',
          );
          await qr.rollbackTransaction();
        } finally {
          await qr.release();
        }
      }
    });

    async function expectConfigError(p: Promise<unknown>) {
      const e = await p.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).to.be.instanceOf(LockConfigError);
      expect((e as Error).message).to.match(/asked for isolation SERIALIZABLE inside a (READ COMMITTED|REPEATABLE READ) transaction/);
    }
  });

  describe("a sibling's time limit", () => {
    it('two sibling withAdvisoryLock(k) in one transaction: the second with timeoutMs 0 throws at once, with timeoutMs 50 and skip skips in time', async () => {
      const started = Date.now();
      let skippedBodyRan = false;
      const [, zero, fifty] = await transaction(() =>
        Promise.allSettled([
          withAdvisoryLock('cmp-sib-1', () => sleep(900)),
          sleep(50).then(() => withAdvisoryLock('cmp-sib-1', async () => 'ran', { timeoutMs: 0 })),
          sleep(50).then(() =>
            withAdvisoryLock(
              'cmp-sib-1',
              async () => {
                skippedBodyRan = true;
              },
              { timeoutMs: 50, onTimeout: 'skip' },
            ).then((v) => ({ v, at: Date.now() - started })),
          ),
        ]),
      );
      expect(zero.status).to.equal('rejected');
      expect((zero as PromiseRejectedResult).reason).to.be.instanceOf(LockNotAvailableError);
      expect(fifty.status).to.equal('fulfilled');
      const { v, at } = (fifty as PromiseFulfilledResult<{ v: unknown; at: number }>).value;
      expect(v).to.equal(undefined);
      expect(skippedBodyRan).to.equal(false);
      expect(at, 'skipped in time, not after the first body').to.be.lessThan(700);
    });

    it('control: without a limit the sibling waits for the first body and then runs', async () => {
      const order: string[] = [];
      await transaction(() =>
        Promise.all([
          withAdvisoryLock('cmp-sib-2', async () => {
            order.push('1+');
            await sleep(100);
            order.push('1-');
          }),
          sleep(20).then(() => withAdvisoryLock('cmp-sib-2', async () => order.push('2'))),
        ]),
      );
      expect(order).to.deep.equal(['1+', '1-', '2']);
    });
  });

  describe('nested dataSource.transaction() inside an ormlock transaction', () => {
    const connectionId = async (run: (sql: string) => Promise<any[]>) => String((await run(env.handle.dialect.connectionIdSql))[0].connectionId);

    it('is a savepoint on the same connection (intended); propagation requires_new opens a second connection', async () => {
      await transaction(async () => {
        const outer = await connectionId((s) => currentManager().query(s));
        const nested = await env.ds.transaction((em) => connectionId((s) => em.query(s)));
        expect(nested).to.equal(outer);
        const separate = await transaction(() => connectionId((s) => currentManager().query(s)), { propagation: 'requires_new' });
        expect(separate).to.not.equal(outer);
      });
    });
  });

  describe('a transaction begun by hand on a QueryRunner', () => {
    it('goes through the model even when ormlock is not told about it: locks taken on it end with its rollback, the runner goes back clean', async () => {
      const qr = env.ds.createQueryRunner();
      await qr.connect();
      try {
        await qr.startTransaction();
        await withAdvisoryLock('cmp-hand-1', () => transaction(() => insert('hand-A'), { dataSource: qr }), { dataSource: qr });
        expect(await freeElsewhere('cmp-hand-1'), 'held until the transaction ends').to.equal(false);
        await qr.rollbackTransaction();
        expect(await names('hand-')).to.deep.equal([]);
        expect(await freeElsewhere('cmp-hand-1'), 'the lock ended with the transaction').to.equal(true);
      } finally {
        await qr.release();
      }
    });
  });

  describe('a connection given back inside a transaction', () => {
    it('is destroyed, not pooled, and the event is reported', async () => {
      const warnings: string[] = [];
      const onWarning = (w: Error & { code?: string }) => {
        if (w.code === 'ORMLOCK_CONNECTION_DISCARDED') warnings.push(w.message);
      };
      process.on('warning', onWarning);
      try {
        const qr = env.ds.createQueryRunner();
        await qr.connect();
        const [row] = await qr.query(env.handle.dialect.connectionIdSql);
        await qr.startTransaction();
        await qr.query(env.name === 'postgres' ? 'SELECT txid_current()' : 'SELECT 1');
        await qr.release();
        await sleep(100);
        expect(warnings.join('\n')).to.match(/a transaction is still open on it/);
        const [{ n }] = await outside(() => env.ds.query(connectionCountSql(env.name), [Number(row.connectionId)]));
        expect(Number(n), 'the backend is gone').to.equal(0);
      } finally {
        process.off('warning', onWarning);
      }
    });
  });
});
