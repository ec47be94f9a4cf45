import type { EntityManager } from '@mikro-orm/core';
import { expect } from 'chai';
import {
  Transactional,
  TransactionNotAllowedError,
  TransactionRequiredError,
  advisoryLockExists,
  advisoryLockId,
  lock,
  transaction,
  withAdvisoryLock,
  type Propagation,
} from '../src';
import { BillUser } from './fixtures/billing';
import { MkOrder, MkUser } from './fixtures/mikro-billing';
import type { BackendName } from './support/backends';
import { openProbe, type DbProbe } from './support/db-probe';
import { describeEachMikroBackend } from './support/mikro-suite';
import { describeEachBackend } from './support/suite';

/** Where a body ran: the connection id, and whether a transaction was open on it. */
interface Where {
  conn: string;
  inTx: boolean;
}

/**
 * Reads where a statement runs through `run` (the ORM's ordinary path inside the body). PostgreSQL:
 * `txid_current()` read twice is the same id inside one transaction and two ids in autocommit;
 * MariaDB: `@@in_transaction`.
 */
async function whereRan(name: BackendName, run: (sql: string) => Promise<any[]>): Promise<Where> {
  if (name === 'postgres') {
    const [a] = await run('SELECT pg_backend_pid() AS c, txid_current()::text AS t');
    const [b] = await run('SELECT pg_backend_pid() AS c, txid_current()::text AS t');
    return { conn: String(a.c), inTx: a.c === b.c && a.t === b.t };
  }
  const [row] = await run('SELECT CONNECTION_ID() AS c, @@in_transaction AS t');
  return { conn: String(row.c), inTx: Number(row.t) === 1 };
}

/** Inside a transaction: where each mode runs its body. */
const INSIDE: Record<Propagation, 'same' | 'other_tx' | 'no_tx' | 'not_allowed'> = {
  required: 'same',
  requires_new: 'other_tx',
  nested: 'same',
  mandatory: 'same',
  never: 'not_allowed',
  supports: 'same',
  not_supported: 'no_tx',
};
/** Outside any transaction. */
const OUTSIDE: Record<Propagation, 'tx' | 'no_tx' | 'required'> = {
  required: 'tx',
  requires_new: 'tx',
  nested: 'tx',
  mandatory: 'required',
  never: 'no_tx',
  supports: 'no_tx',
  not_supported: 'no_tx',
};
const MODES = Object.keys(INSIDE) as Propagation[];

/** The mode table, checked through one ORM's path to the database. */
function modeTable(getName: () => BackendName, run: (sql: string) => Promise<any[]>, asDecorator: boolean) {
  const where = () => whereRan(getName(), run);
  const call = (mode: Propagation, fn: () => Promise<Where>) => {
    if (!asDecorator) return transaction(fn, { propagation: mode });
    class Service {
      @Transactional({ propagation: mode })
      async body() {
        return fn();
      }
    }
    return new Service().body();
  };

  for (const mode of MODES) {
    it(`${asDecorator ? '@Transactional' : 'transaction'}({ propagation: '${mode}' }) inside a transaction: ${INSIDE[mode]}`, async () => {
      await transaction(async () => {
        const outer = await where();
        expect(outer.inTx).to.equal(true);
        const got = await call(mode, where).then(
          (w) => w,
          (e) => e,
        );
        switch (INSIDE[mode]) {
          case 'same':
            expect(got).to.deep.equal(outer);
            break;
          case 'other_tx':
            expect(got.conn).to.not.equal(outer.conn);
            expect(got.inTx).to.equal(true);
            break;
          case 'no_tx':
            expect(got.conn).to.not.equal(outer.conn);
            expect(got.inTx).to.equal(false);
            break;
          case 'not_allowed':
            expect(got).to.be.instanceOf(TransactionNotAllowedError);
            expect(got.code).to.equal('TRANSACTION_NOT_ALLOWED');
            break;
        }
        // the outer transaction is still there afterwards
        expect(await where()).to.deep.equal(outer);
      });
    });

    it(`${asDecorator ? '@Transactional' : 'transaction'}({ propagation: '${mode}' }) outside a transaction: ${OUTSIDE[mode]}`, async () => {
      const got = await call(mode, where).then(
        (w) => w,
        (e) => e,
      );
      if (OUTSIDE[mode] === 'required') {
        expect(got).to.be.instanceOf(TransactionRequiredError);
      } else {
        expect(got.inTx).to.equal(OUTSIDE[mode] === 'tx');
      }
    });
  }
}

/**
 * The table of where each mode's body ran inside a transaction, printed: the connection id and
 * whether a transaction was open there (the outer transaction's first).
 */
function whereTable(label: () => string, getName: () => BackendName, run: (sql: string) => Promise<any[]>) {
  it('prints where each mode ran inside a transaction: connection id and transaction', async () => {
    const rows: string[] = [];
    await transaction(async () => {
      const outer = await whereRan(getName(), run);
      rows.push(`      (outer)        conn ${outer.conn} tx ${outer.inTx}`);
      for (const mode of MODES) {
        const got = await transaction(() => whereRan(getName(), run), { propagation: mode }).then(
          (w) => `conn ${w.conn}${w.conn === outer.conn ? ' (outer)' : ''} tx ${w.inTx}`,
          (e) => e.name,
        );
        rows.push(`      ${mode.padEnd(14)} ${got}`);
      }
    });
    console.log(`    where the body ran [${label()}]:\n${rows.join('\n')}`);
    expect(rows).to.have.length(MODES.length + 1);
  });
}

/** What one ORM gives the checks against the database: two committed rows of `table` and the ambient connection's id. */
interface LockTarget {
  name(): BackendName;
  table: string;
  /** Inserts (and commits) n rows; their ids. */
  rows(n: number): Promise<number[]>;
  /** Locks row `id` through ormlock's `lock(entity)` in the ambient transaction. */
  lockRow(id: number): Promise<void>;
  /** The ambient connection's id (pg_backend_pid / CONNECTION_ID). */
  connectionId(): Promise<number>;
  /** Where the ORM's ordinary path runs a statement now. */
  where(): Promise<Where>;
}

/**
 * A `nested` savepoint rolled back, as another connection sees its locks on the database.
 * PostgreSQL drops them with the savepoint: row locks (FOR UPDATE SKIP LOCKED finds the row) and
 * transaction-scope advisory locks (pg_locks). MariaDB keeps both until the transaction ends
 * (docs/transactions.md): InnoDB keeps the row locks of a transaction that did anything before
 * the savepoint, and GET_LOCK is not transactional (IS_USED_LOCK).
 */
function nestedLocksAgainstTheDatabase(t: LockTarget) {
  let probe: DbProbe | null = null;
  before(async () => {
    probe = await openProbe(t.name());
  });
  after(() => probe?.close());

  it("'nested' rolled back: the row lock taken inside (PostgreSQL: gone at once; MariaDB: held until COMMIT); a released one and the outer transaction's stay until COMMIT", async () => {
    const dropped = t.name() === 'postgres';
    const [outerRow, rolledBack, released] = await t.rows(3);
    for (const id of [outerRow, rolledBack, released]) expect(await probe!.rowLocked(t.table, id), `row ${id} before`).to.equal(false);
    await transaction(async () => {
      await t.lockRow(outerRow);
      const err = await transaction(
        async () => {
          await t.lockRow(rolledBack);
          expect(await probe!.rowLocked(t.table, rolledBack), 'inside the savepoint').to.equal(true);
          throw new Error('inner fails');
        },
        { propagation: 'nested' },
      ).then(
        () => null,
        (e) => e,
      );
      expect(err.message).to.equal('inner fails');
      expect(await probe!.rowLocked(t.table, rolledBack), 'after ROLLBACK TO SAVEPOINT').to.equal(!dropped);
      await transaction(() => t.lockRow(released), { propagation: 'nested' });
      expect(await probe!.rowLocked(t.table, released), 'after RELEASE SAVEPOINT').to.equal(true);
      expect(await probe!.rowLocked(t.table, outerRow), "the outer transaction's").to.equal(true);
    });
    for (const id of [outerRow, rolledBack, released]) expect(await probe!.rowLocked(t.table, id), `row ${id} after COMMIT`).to.equal(false);
  });

  it("'nested' rolled back: its transaction-scope advisory lock (PostgreSQL: gone from pg_locks at once; MariaDB: GET_LOCK held until the transaction ends)", async () => {
    const key = `propagation-nested-db-${process.pid}-${Date.now()}`;
    const postgres = t.name() === 'postgres';
    const held = async (pid: number) => (postgres ? (await probe!.advisoryLocksOf(pid)) > 0 : probe!.namedLockUsed(advisoryLockId(key)[0]));
    let pid = -1;
    const seen: boolean[] = [];
    await transaction(async () => {
      pid = await t.connectionId();
      await transaction(
        () =>
          withAdvisoryLock(
            key,
            async () => {
              seen.push(await held(pid));
            },
            { scope: 'transaction' },
          ).then(() => {
            throw new Error('inner fails');
          }),
        { propagation: 'nested' },
      ).catch(() => undefined);
      seen.push(await held(pid));
    });
    seen.push(await held(pid));
    // during the savepoint; after ROLLBACK TO SAVEPOINT; after COMMIT
    expect(seen).to.deep.equal(postgres ? [true, false, false] : [true, true, false]);
  });

  it("'not_supported' suspends the transaction: the body runs on another connection without one, while the suspended transaction's row and advisory locks stay held (seen from a third connection)", async () => {
    const [row] = await t.rows(1);
    const key = `propagation-suspended-db-${process.pid}-${Date.now()}`;
    const postgres = t.name() === 'postgres';
    let pid = -1;
    const advisoryHeld = async () => (postgres ? (await probe!.advisoryLocksOf(pid)) > 0 : probe!.namedLockUsed(advisoryLockId(key)[0]));
    await transaction(async () => {
      pid = await t.connectionId();
      const outer = await t.where();
      await t.lockRow(row);
      await withAdvisoryLock(
        key,
        async () => {
          const inside = await transaction(
            async () => ({ where: await t.where(), row: await probe!.rowLocked(t.table, row), advisory: await advisoryHeld() }),
            { propagation: 'not_supported' },
          );
          expect(inside.where.conn).to.not.equal(outer.conn);
          expect(inside.where.inTx).to.equal(false);
          expect(inside.row, "the suspended transaction's row lock").to.equal(true);
          expect(inside.advisory, "the suspended transaction's advisory lock").to.equal(true);
        },
        { scope: 'transaction' },
      );
      expect(await t.where()).to.deep.equal(outer);
    });
    expect(await probe!.rowLocked(t.table, row)).to.equal(false);
    expect(await advisoryHeld()).to.equal(false);
  });
}

describeEachBackend('propagation', [BillUser], (env) => {
  modeTable(
    () => env.name,
    (sql) => env.ds.query(sql),
    false,
  );
  modeTable(
    () => env.name,
    (sql) => env.ds.query(sql),
    true,
  );
  whereTable(
    () => `typeorm, ${env.name}`,
    () => env.name,
    (sql) => env.ds.query(sql),
  );
  nestedLocksAgainstTheDatabase({
    name: () => env.name,
    table: 'bill_users',
    rows: async (n) => {
      const repo = env.ds.getRepository(BillUser);
      const saved = await repo.save(Array.from({ length: n }, (_, i) => repo.create({ credits: i, name: 'nested-lock-row' })));
      return saved.map((u) => u.id);
    },
    lockRow: async (id) => void (await lock(await env.ds.getRepository(BillUser).findOneByOrFail({ id }))),
    connectionId: async () => Number((await env.ds.query(env.name === 'postgres' ? 'SELECT pg_backend_pid() AS c' : 'SELECT CONNECTION_ID() AS c'))[0].c),
    where: () => whereRan(env.name, (sql) => env.ds.query(sql)),
  });

  it("'nested' is a savepoint: its throw rolls back its writes (and on PostgreSQL its locks, per pg_locks), the outer transaction commits", async () => {
    const repo = env.ds.getRepository(BillUser);
    let advisoryDuring = -1;
    let advisoryAfter = -1;
    await transaction(async () => {
      const [{ c: pid }] = await env.ds.query(env.name === 'postgres' ? 'SELECT pg_backend_pid() AS c' : 'SELECT CONNECTION_ID() AS c');
      const countAdvisory = async () => {
        if (env.name !== 'postgres') return 0;
        const [row] = await env.ds.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", [pid]);
        return row.n;
      };
      await repo.save(repo.create({ credits: 1, name: 'nested-outer' }));
      const err = await transaction(
        async () => {
          await repo.save(repo.create({ credits: 2, name: 'nested-inner' }));
          await withAdvisoryLock(
            'propagation-nested',
            async () => {
              advisoryDuring = await countAdvisory();
            },
            { scope: 'transaction' },
          );
          throw new Error('inner fails');
        },
        { propagation: 'nested' },
      ).then(
        () => null,
        (e) => e,
      );
      expect(err.message).to.equal('inner fails');
      advisoryAfter = await countAdvisory();
      if (env.name === 'postgres') expect(await advisoryLockExists('propagation-nested')).to.equal(false);
      expect(await repo.countBy({ name: 'nested-inner' })).to.equal(0);
    });
    if (env.name === 'postgres') {
      expect(advisoryDuring).to.equal(1);
      expect(advisoryAfter).to.equal(0);
    }
    expect(await repo.countBy({ name: 'nested-outer' })).to.equal(1);
    expect(await repo.countBy({ name: 'nested-inner' })).to.equal(0);
  });

  it("'not_supported' keeps the suspended transaction's locks held while the body runs outside it", async () => {
    await transaction(async () => {
      await withAdvisoryLock(
        'propagation-suspended',
        async () => {
          await transaction(
            async () => {
              expect((await whereRan(env.name, (sql) => env.ds.query(sql))).inTx).to.equal(false);
              expect(await advisoryLockExists('propagation-suspended')).to.equal(true);
            },
            { propagation: 'not_supported' },
          );
        },
        { scope: 'transaction' },
      );
    });
  });
});

describeEachMikroBackend('propagation', [MkUser, MkOrder], (env) => {
  // the global orm.em, as a service would use it: MikroORM resolves it from its context
  const run = (sql: string) => {
    const em = env.orm.em as EntityManager;
    return em.getConnection().execute(sql, [], 'all', em.getTransactionContext());
  };
  modeTable(() => env.name, run, false);
  modeTable(() => env.name, run, true);
  whereTable(
    () => `mikro-orm, ${env.name}`,
    () => env.name,
    run,
  );
  nestedLocksAgainstTheDatabase({
    name: () => env.name,
    table: 'mk_bill_users',
    rows: async (n) => {
      const em = env.orm.em.fork();
      const users = Array.from({ length: n }, (_, i) => em.create(MkUser, { credits: 100 + i }));
      await em.flush();
      return users.map((u) => u.id);
    },
    lockRow: async (id) => void (await lock(env.orm.em.getReference(MkUser, id))),
    connectionId: async () => Number((await run(env.name === 'postgres' ? 'SELECT pg_backend_pid() AS c' : 'SELECT CONNECTION_ID() AS c'))[0].c),
    where: () => whereRan(env.name, run),
  });

  it("'nested' is a savepoint: its throw rolls back its flushes, the outer transaction commits", async () => {
    await transaction(async () => {
      const em = env.orm.em.getContext();
      em.create(MkUser, { credits: 11 });
      await em.flush();
      const err = await transaction(
        async () => {
          const inner = env.orm.em.getContext();
          inner.create(MkUser, { credits: 12 });
          await inner.flush();
          throw new Error('inner fails');
        },
        { propagation: 'nested' },
      ).then(
        () => null,
        (e) => e,
      );
      expect(err.message).to.equal('inner fails');
      em.clear();
    });
    expect(await env.orm.em.fork().count(MkUser, { credits: 11 })).to.equal(1);
    expect(await env.orm.em.fork().count(MkUser, { credits: 12 })).to.equal(0);
  });

  it("'not_supported': the global orm.em inside resolves to a manager without a transaction", async () => {
    await transaction(async () => {
      const txEm = env.orm.em.getContext();
      await transaction(
        async () => {
          expect(env.orm.em.getContext()).to.not.equal(txEm);
          expect(env.orm.em.getTransactionContext()).to.equal(undefined);
        },
        { propagation: 'not_supported' },
      );
      expect(env.orm.em.getContext()).to.equal(txEm);
    });
  });
});
