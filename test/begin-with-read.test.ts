import { expect } from 'chai';
import { Column, DataSource, Entity, In, PrimaryColumn, PrimaryGeneratedColumn, type DataSourceOptions, type EntityManager, type QueryRunner } from 'typeorm';
import { AdvisoryLock, currentManager, installLocking, LockConfigError, LockTimeoutError, lock, Pessimistic, transaction, withLock } from '../src';
import { beginWithStatement } from '../src/dialects/postgres/begin-with-statement';
import { queryWithBegin } from '../src/orm/typeorm/internals/deferred-begin';
import { Barrier } from '../src/testing';
import { openProbe } from './support/db-probe';
import { dataSourceOptions } from './support/backends';
import { QueryLog, statementsOf } from './support/query-log';
import { describeEachBackend } from './support/suite';

/**
 * A transaction ormlock opens sends its BEGIN with its first statement where the database allows
 * it — above all its lock, a locked read by primary key: one round trip fewer, the same
 * statements, the same transaction. PostgreSQL: any statement whose values can be written into
 * it; MariaDB: a SELECT that takes no row lock, in a compound statement. Anything else sends
 * BEGIN on its own first, as before.
 */

@Entity('bw_wallets')
class BwWallet {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) credits!: number;
}

@Entity('bw_codes')
class BwCode {
  @PrimaryColumn({ type: 'varchar', length: 40 }) code!: string;
  @Column({ type: 'int' }) n!: number;
}

class WalletService {
  constructor(private readonly ds: () => import('typeorm').DataSource) {}

  @Pessimistic()
  async debit(id: number, fail = false): Promise<BwWallet> {
    const wallets = this.ds().getRepository(BwWallet);
    const w = await wallets.findOneByOrFail({ id });
    await wallets.update({ id }, { credits: w.credits - 1 });
    if (fail) throw new Error('body failed after its write');
    return w;
  }

  @Pessimistic({ timeoutMs: 300 })
  async debitWithin(id: number, hold?: () => Promise<void>): Promise<void> {
    const wallets = this.ds().getRepository(BwWallet);
    const w = await wallets.findOneByOrFail({ id });
    await hold?.();
    await wallets.update({ id }, { credits: w.credits - 1 });
  }
}

describe('beginWithStatement (PostgreSQL): BEGIN and a statement in one query', () => {
  const begin = 'START TRANSACTION';
  /** The query's text (the PostgreSQL writer sends no parameters and takes the last result). */
  const write = (b: string, sql: string, parameters: unknown[]) => {
    const begun = beginWithStatement(b, sql, parameters);
    if (begun) expect([begun.parameters, begun.result]).to.deep.equal([undefined, 'last']);
    return begun?.sql;
  };
  it('writes each parameter as a quoted literal where its placeholder stands', () => {
    expect(write(begin, 'SELECT * FROM "t" WHERE "t"."id" = $1 AND "t"."b" = $2 FOR UPDATE', [42, 'a-b_c.d:e@f+g'])).to.equal(
      `START TRANSACTION; SELECT * FROM "t" WHERE "t"."id" = '42' AND "t"."b" = 'a-b_c.d:e@f+g' FOR UPDATE`,
    );
    expect(write(begin, 'SELECT $1, $1', [7n])).to.equal(`START TRANSACTION; SELECT '7', '7'`);
    expect(write(begin, 'SELECT $1, $2', ['two words, #1 & $2', ''])).to.equal(`START TRANSACTION; SELECT 'two words, #1 & $2', ''`);
    expect(write(begin, 'UPDATE "t" SET "n" = $1 WHERE "id" IN ($2)', [-3, 9])).to.equal(`START TRANSACTION; UPDATE "t" SET "n" = '-3' WHERE "id" IN ('9')`);
    expect(write(begin, 'COMMIT', [])).to.equal('START TRANSACTION; COMMIT');
  });

  it('leaves `$n` inside names, strings and comments alone', () => {
    expect(write(begin, `SELECT "a$1", 'x $1 ''$1''', a$1 /* $1 */ FROM t WHERE id = $1 -- $1`, [5])).to.equal(
      `START TRANSACTION; SELECT "a$1", 'x $1 ''$1''', a$1 /* $1 */ FROM t WHERE id = '5' -- $1`,
    );
  });

  it('refuses what it cannot write without changing what runs: values needing escaping, a second statement, dollar and E strings, placeholders and values that do not match', () => {
    for (const value of [
      "o'brien",
      'back\\slash',
      'tab\there',
      'café',
      'x'.repeat(1001),
      1.5,
      2 ** 60,
      null,
      undefined,
      new Date(0),
      { id: 1 },
      true,
      Buffer.from('x'),
    ]) {
      expect(write(begin, 'SELECT $1', [value]), String(value)).to.equal(undefined);
    }
    expect(write(begin, 'SELECT 1; DELETE FROM t', [])).to.equal(undefined);
    expect(write(begin, 'SELECT $$a;b$$', [])).to.equal(undefined);
    expect(write(begin, 'SELECT $tag$ $1 $tag$, $1', [1])).to.equal(undefined);
    expect(write(begin, "SELECT E'\\'' || $1", [1])).to.equal(undefined);
    expect(write(begin, "SELECT 'unclosed", [])).to.equal(undefined);
    expect(write(begin, 'SELECT $1, $2', [1])).to.equal(undefined);
    expect(write(begin, 'SELECT $2', [1, 2])).to.equal(undefined);
    expect(write(begin, "SELECT 'a;b', $1", [1])).to.equal(`START TRANSACTION; SELECT 'a;b', '1'`);
  });

  it('queryWithBegin: a runner that does not hand the text to its driver connection fails loudly (LockConfigError naming the internal)', async () => {
    const client = { query: () => Promise.resolve([{ command: 'BEGIN' }, { rows: [] }]) };
    const qr = { databaseConnection: client } as unknown as QueryRunner;
    const error = await queryWithBegin(qr, () => Promise.resolve([]), { sql: 'START TRANSACTION; SELECT 1', result: 'last' }).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(LockConfigError);
    expect((error as Error).message).to.contain('BEGIN sent with the first statement');
  });
});

describeEachBackend('a transaction’s BEGIN rides with its first statement', [BwWallet, BwCode], (env) => {
  const pg = () => env.name === 'postgres';
  /** Any statement whose values can be written in rides (PostgreSQL); on MariaDB only a SELECT. */
  const rides = pg;
  /** `SELECT` that tells whether the connection is inside a transaction, and which. */
  const inTransactionSql = () => (pg() ? 'SELECT txid_current()::text AS t' : 'SELECT @@in_transaction AS t');
  const wallets = () => env.ds.getRepository(BwWallet);
  const service = new WalletService(() => env.ds);
  const newWallet = async (credits = 10) => (await wallets().save(wallets().create({ credits }))).id;

  /** Statements and round trips of `work`. */
  async function sent(work: () => Promise<unknown>) {
    env.log.start();
    await work();
    const statements = env.log.stop();
    return { statements, sent: [...env.log.sent] };
  }

  it('@Pessimistic findOneBy(id) + update: BEGIN, SELECT … FOR UPDATE, UPDATE, COMMIT in one round trip fewer (MariaDB: pipelined), the same statements', async () => {
    const id = await newWallet();
    const { statements, sent: queries } = await sent(() => service.debit(id));
    expect(statements.map((s) => s.split(' ')[0])).to.deep.equal(['START', 'SELECT', 'UPDATE', 'COMMIT']);
    expect(statements[1]).to.match(/FOR UPDATE/);
    expect(queries).to.have.length(3);
    expect(queries[0]).to.match(/^START TRANSACTION; SELECT .* FOR UPDATE$/s);
    if (pg()) expect(queries[0]).to.contain(`= '${id}'`);
    else expect(queries[0]).to.contain('= ?');
    expect((await wallets().findOneByOrFail({ id })).credits).to.equal(9);
  });

  it('the read and the write are one transaction: a body that throws after its write leaves the row as it was', async () => {
    const id = await newWallet();
    const error = await service.debit(id, true).catch((e: unknown) => e);
    expect((error as Error).message).to.equal('body failed after its write');
    expect((await wallets().findOneByOrFail({ id })).credits).to.equal(10);
  });

  it('the row is locked from the merged read on: another transaction waits until COMMIT, and 20 racing debits are exact', async () => {
    const id = await newWallet(100);
    const probe = (await openProbe(env.name))!;
    try {
      const held = new Barrier(2);
      const release = new Barrier(2);
      const running = service.debitWithin(id, async () => {
        await held.wait();
        await release.wait();
      });
      await held.wait();
      expect(await probe.rowLocked('bw_wallets', id)).to.equal(true);
      await release.wait();
      await running;
      expect(await probe.rowLocked('bw_wallets', id)).to.equal(false);
    } finally {
      await probe.close();
    }
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => service.debit(id)));
    expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
    expect((await wallets().findOneByOrFail({ id })).credits).to.equal(79);
  });

  it('with timeoutMs: the wait limit rides too (PostgreSQL: one statement for lock and limit; MariaDB: FOR UPDATE WAIT n, pipelined); a held row gives LockTimeoutError and the limit is not left behind', async () => {
    const id = await newWallet();
    const { statements, sent: queries } = await sent(() => service.debitWithin(id));
    expect(statements).to.have.length(4);
    expect(queries).to.have.length(3);
    if (!pg()) expect(statements[1]).to.match(/FOR UPDATE WAIT 1$/);
    const release = new Barrier(2);
    const held = new Barrier(2);
    const holder = transaction(async () => {
      await lock(await wallets().findOneByOrFail({ id }));
      await held.wait();
      await release.wait();
    });
    await held.wait();
    try {
      const error = await service.debitWithin(id).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(LockTimeoutError);
    } finally {
      await release.wait();
      await holder;
    }
    // the pooled connection that timed out is clean: a plain transaction on every connection has the server's default
    const limits = await Promise.all(
      Array.from({ length: 4 }, () =>
        transaction(async () => String((await env.ds.query(env.name === 'postgres' ? `SELECT current_setting('lock_timeout') AS v` : 'SELECT 1 AS v'))[0].v)),
      ),
    );
    expect(new Set(limits).size).to.equal(1);
  });

  it('withLock(entity) and lock() as a transaction’s first statement ride the same way', async () => {
    const id = await newWallet();
    const loaded = await wallets().findOneByOrFail({ id });
    const viaWithLock = await sent(() => withLock(loaded, async (w) => void (await wallets().update({ id }, { credits: w.credits - 1 }))));
    const viaLock = await sent(() =>
      transaction(async () => {
        const w = await lock(loaded);
        await wallets().update({ id }, { credits: w.credits - 1 });
      }),
    );
    for (const { statements, sent: queries } of [viaWithLock, viaLock]) {
      expect(statements).to.have.length(4);
      expect(queries).to.have.length(3);
    }
    expect((await wallets().findOneByOrFail({ id })).credits).to.equal(8);
  });

  it('@AdvisoryLock: the lock is the first statement and rides too; it holds until COMMIT', async () => {
    const id = await newWallet();
    class Advised {
      @AdvisoryLock((walletId: number) => `bw-wallet:${walletId}`)
      async debit(walletId: number, during?: () => Promise<void>) {
        const w = await wallets().findOneByOrFail({ id: walletId });
        await during?.();
        await wallets().update({ id: walletId }, { credits: w.credits - 1 });
      }
    }
    const advised = new Advised();
    const { statements, sent: queries } = await sent(() => advised.debit(id));
    expect(statements[0]).to.equal('START TRANSACTION');
    expect(statements[1]).to.match(env.name === 'postgres' ? /pg_advisory_xact_lock/ : /GET_LOCK/);
    expect(queries).to.have.length(statements.length - 1);
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => advised.debit(id, () => new Promise((r) => setTimeout(r, 5)))));
    expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
    expect((await wallets().findOneByOrFail({ id })).credits).to.equal(-1);
  });

  it('any first statement rides when its values can be written in (PostgreSQL; on MariaDB only a SELECT): an UPDATE first keeps its result (affected rows), and the body is one transaction', async () => {
    const id = await newWallet();
    let affected: number | undefined;
    const { statements, sent: queries } = await sent(() =>
      transaction(async () => {
        affected = (await wallets().update({ id }, { credits: 5 })).affected;
        await wallets().findOneByOrFail({ id });
      }),
    );
    expect(affected).to.equal(1);
    expect(statements.map((s) => s.split(' ')[0])).to.deep.equal(['START', 'UPDATE', 'SELECT', 'COMMIT']);
    expect(queries).to.have.length(rides() ? 3 : 4);
    const inserted = await transaction(
      async () => (await env.ds.query(`INSERT INTO bw_wallets (credits) VALUES (${env.name === 'postgres' ? '$1) RETURNING id' : '?)'}`, [4])) as unknown,
    );
    expect(inserted, 'an INSERT … RETURNING first returns its rows').to.satisfy((r: unknown) =>
      rides() ? Array.isArray(r) && r.length === 1 : r !== undefined,
    );
    const error = await transaction(async () => {
      await wallets().update({ id }, { credits: 1 });
      throw new Error('undo');
    }).catch((e: unknown) => e);
    expect((error as Error).message).to.equal('undo');
    expect((await wallets().findOneByOrFail({ id })).credits).to.equal(5);
  });

  it('a first statement that cannot ride (PostgreSQL: a string with a quote; MariaDB: an INSERT) gets BEGIN on its own just before it', async () => {
    const codes = env.ds.getRepository(BwCode);
    const { statements, sent: queries } = await sent(() => transaction(async () => void (await codes.insert({ code: "it's", n: 1 }))));
    expect(queries).to.deep.equal(statements);
    expect(statements[0]).to.equal('START TRANSACTION');
    expect(await codes.countBy({ code: "it's" })).to.equal(1);
  });

  it('a transaction that sends nothing commits (PostgreSQL: BEGIN and COMMIT in one query), and a stream as first statement runs inside the transaction', async () => {
    const { statements, sent: queries } = await sent(() => transaction(async () => undefined));
    expect(statements.map((s) => s.split(' ')[0])).to.deep.equal(['START', 'COMMIT']);
    expect(queries).to.have.length(rides() ? 1 : 2);
    const sql = inTransactionSql();
    const [streamed, after] = await transaction(async () => {
      const runner = (currentManager() as EntityManager).queryRunner!;
      const stream = await runner.stream(sql);
      const got: Array<{ t: unknown }> = [];
      for await (const row of stream) got.push(row as { t: unknown });
      return [String(got[0].t), String((await runner.query(sql))[0].t)];
    });
    expect(streamed, 'the stream ran in the transaction (the same transaction id after it)').to.equal(after);
    if (!pg()) expect(streamed).to.equal('1');
  });

  it('a string key that needs escaping is not written into the statement (PostgreSQL: BEGIN goes first; MariaDB: it rides, the driver writes the value), the read still locks the row', async () => {
    const codes = env.ds.getRepository(BwCode);
    await codes.save([codes.create({ code: "o'brien", n: 1 }), codes.create({ code: 'plain-code_1', n: 1 })]);
    class Codes {
      @Pessimistic()
      async bump(code: string) {
        const c = await codes.findOneByOrFail({ code });
        await codes.update({ code }, { n: c.n + 1 });
      }
    }
    const bumper = new Codes();
    const quoted = await sent(() => bumper.bump("o'brien"));
    expect(quoted.statements).to.have.length(4);
    if (pg()) expect(quoted.sent).to.deep.equal(quoted.statements);
    else expect(quoted.sent).to.have.length(3);
    const plain = await sent(() => bumper.bump('plain-code_1'));
    expect(plain.statements).to.have.length(4);
    expect(plain.sent).to.have.length(3);
    expect((await codes.findBy({ code: In(["o'brien", 'plain-code_1']) })).map((c) => [c.code, c.n]).sort()).to.deep.equal([
      ["o'brien", 2],
      ['plain-code_1', 2],
    ]);
  });

  it('a named isolation level is set before the first statement, in the same transaction, whether it rides (a read; a locked read, pipelined on MariaDB) or not (MariaDB: a write first)', async () => {
    const id = await newWallet();
    for (const [isolation, first] of [
      ['SERIALIZABLE', 'read'],
      ['READ COMMITTED', 'read'],
      ['SERIALIZABLE', 'locked read'],
      ['READ COMMITTED', 'locked read'],
      ['SERIALIZABLE', 'write'],
    ] as const) {
      const { sent: queries } = await sent(async () => {
        const level = await transaction(
          async () => {
            if (first === 'read') await lock(await wallets().findOneByOrFail({ id }));
            else if (first === 'locked read') await lock(wallets().create({ id }));
            else await wallets().update({ id }, { credits: 3 });
            if (pg()) return String((await env.ds.query(`SELECT current_setting('transaction_isolation') AS v`))[0].v);
            // MariaDB: the running transaction's level is InnoDB's (@@tx_isolation is the session's); its table is refreshed every 0.1 s
            await new Promise((r) => setTimeout(r, 150));
            const sql = 'SELECT trx_isolation_level AS v FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()';
            return String((await env.ds.query(sql))[0].v);
          },
          { isolation },
        );
        expect(level.toUpperCase().replace('-', ' '), `${isolation}, ${first} first`).to.equal(isolation);
      });
      if (first === 'write' && !pg()) {
        expect(
          queries.slice(0, 3).map((q) => q.split(' ')[0]),
          'the level and BEGIN on their own, then the write',
        ).to.deep.equal(['SET', 'START', 'UPDATE']);
        continue;
      }
      expect(queries[0], `the level is set and BEGIN sent with the first statement: ${first}`).to.match(
        pg()
          ? /^START TRANSACTION; SET TRANSACTION ISOLATION LEVEL [A-Z ]+; (SELECT|UPDATE)/
          : first === 'read'
            ? /^BEGIN NOT ATOMIC SET TRANSACTION ISOLATION LEVEL [A-Z ]+; START TRANSACTION; SELECT/
            : /^SET TRANSACTION ISOLATION LEVEL [A-Z ]+; START TRANSACTION; SELECT .* FOR UPDATE$/s,
      );
    }
    expect(statementsOf(`START TRANSACTION; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1`)).to.deep.equal([
      'START TRANSACTION',
      'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
      'SELECT 1',
    ]);
  });

  it('siblings at the start of a transaction: a locked read and a query at once both run inside it', async () => {
    const a = await newWallet(1);
    const sql = inTransactionSql();
    for (const order of ['read first', 'query first']) {
      const [during, after] = await transaction(async () => {
        const manager = currentManager() as EntityManager;
        const read = () => lock(wallets().create({ id: a }));
        const query = () => manager.query(sql) as Promise<Array<{ t: unknown }>>;
        const rows = order === 'read first' ? (await Promise.all([read(), query()]))[1] : (await Promise.all([query(), read()]))[0];
        return [String(rows[0].t), String((await manager.query(sql))[0].t)];
      });
      expect(during, order).to.equal(after);
      if (!pg()) expect(during, order).to.equal('1');
    }
  });
});

describe('MariaDB connections made otherwise: without the MULTI_RESULTS client flag, compressed', () => {
  /** `work` on a MariaDB DataSource of its own (`made`: how its connections are made), with ormlock installed and a query log. */
  async function onDataSource(made: Partial<DataSourceOptions> & { poolSize?: number }, work: (ds: DataSource, log: QueryLog) => Promise<void>) {
    const { poolSize = 2, ...rest } = made;
    const options = await dataSourceOptions('mariadb', [BwWallet], { fresh: false, poolSize });
    if (!options) throw new Error('MariaDB is not reachable');
    const log = new QueryLog();
    const ds = await new DataSource({ ...options, ...rest, logger: log, logging: true } as DataSourceOptions).initialize();
    const handle = await installLocking(ds);
    try {
      await work(ds, log);
    } finally {
      handle.uninstall();
      await ds.destroy();
    }
  }

  it('a connection made with flags: [-MULTI_RESULTS] cannot take a compound statement’s result set, so its first SELECT does not ride, and the transaction holds', async () => {
    await onDataSource({ extra: { flags: ['-MULTI_RESULTS'] } }, async (ds, log) => {
      log.start();
      const rows = await transaction(async () => (await ds.query('SELECT @@in_transaction AS t')) as Array<{ t: unknown }>, { dataSource: ds });
      expect(log.stop()).to.deep.equal(['START TRANSACTION', 'SELECT @@in_transaction AS t', 'COMMIT']);
      expect(log.sent).to.deep.equal(['START TRANSACTION', 'SELECT @@in_transaction AS t', 'COMMIT']);
      expect(String(rows[0].t)).to.equal('1');
      // the control: this connection refuses the compound statement the others ride in
      const error = await ds.query('BEGIN NOT ATOMIC SELECT 1; END').catch((e: unknown) => e);
      expect(String((error as Error).message)).to.match(/can't return a result set/);
      // a locked read is pipelined, which needs no several results: it rides there
      const { id } = await ds.getRepository(BwWallet).save({ credits: 1 });
      log.start();
      await transaction(async () => void (await lock(ds.getRepository(BwWallet).create({ id }))), { dataSource: ds });
      log.stop();
      expect(log.sent.map((q) => q.replace(/ SELECT .*/s, ' SELECT'))).to.deep.equal(['START TRANSACTION; SELECT', 'COMMIT']);
    });
  });

  it('an opening statement that fails (a transaction left open on the pooled connection behind TypeORM’s back): the call gets that failure, the transaction is rolled back, the row is not left locked and the connection stays usable', async () => {
    await onDataSource({ poolSize: 1, synchronize: true }, async (ds, log) => {
      const probe = (await openProbe('mariadb'))!;
      try {
        const { id } = await ds.getRepository(BwWallet).save({ credits: 1 });
        // the pool's only connection goes back with a transaction open: SET TRANSACTION then fails
        const qr = ds.createQueryRunner();
        const connection = (await qr.connect()) as { query(sql: string, cb: (e: unknown) => void): void };
        await new Promise<void>((resolve, reject) => connection.query('START TRANSACTION', (e) => (e ? reject(e as Error) : resolve())));
        await qr.release();
        log.start();
        const error = await transaction(async () => lock(ds.getRepository(BwWallet).create({ id })), { dataSource: ds, isolation: 'SERIALIZABLE' }).catch(
          (e: unknown) => e,
        );
        log.stop();
        expect(String((error as Error).message)).to.match(/Transaction characteristics can't be changed while a transaction is in progress/);
        expect(log.sent[0], 'the level and BEGIN were pipelined with the locked read').to.match(
          /^SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; START TRANSACTION; SELECT .* FOR UPDATE$/s,
        );
        expect(log.sent.slice(1)).to.deep.equal(['ROLLBACK']);
        expect(await probe.rowLocked('bw_wallets', id), 'the locked read was rolled back').to.equal(false);
        const [row] = (await ds.query('SELECT @@in_transaction AS t')) as Array<{ t: unknown }>;
        expect(String(row.t)).to.equal('0');
        const credits = await transaction(async () => (await lock(ds.getRepository(BwWallet).create({ id }))).credits, {
          dataSource: ds,
          isolation: 'SERIALIZABLE',
        });
        expect(credits).to.equal(1);
      } finally {
        await probe.close();
      }
    });
  });

  it('a compressed connection (compress: true) frames its packets otherwise: a locked read does not ride there, and the transaction holds', async () => {
    await onDataSource({ extra: { compress: true } }, async (ds, log) => {
      const { id } = await ds.getRepository(BwWallet).save({ credits: 1 });
      log.start();
      const rows = await transaction(
        async () => {
          await lock(ds.getRepository(BwWallet).create({ id }));
          return (await ds.query('SELECT @@in_transaction AS t')) as Array<{ t: unknown }>;
        },
        { dataSource: ds },
      );
      log.stop();
      expect(log.sent.map((q) => q.split(' ')[0])).to.deep.equal(['START', 'SELECT', 'SELECT', 'COMMIT']);
      expect(String(rows[0].t)).to.equal('1');
    });
  });
});
