import { expect } from 'chai';
import type { QueryRunner } from 'typeorm';
import { LockConfigError } from '../src';
import { beginNotAtomic } from '../src/dialects/mysql/begin-with-statement';
import { queryWithBegin } from '../src/orm/typeorm/internals/deferred-begin';

/**
 * MariaDB's BEGIN rides with a SELECT in a compound statement, or written ahead of a SELECT with
 * a row lock (pipelined); the integration tests (both ORMs' versions,
 * test/begin-with-read.test.ts) show it runs in one transaction. Here: which statements ride
 * which way, the narrowing of the driver's answer to the SELECT's, and the pipelining's probe.
 */
describe('beginNotAtomic (MariaDB): BEGIN and a SELECT in one round trip', () => {
  const begin = 'START TRANSACTION';
  const rides = (sql: string) => beginNotAtomic(begin, sql, [1])?.sql;

  it('wraps a SELECT and leaves its parameters to the driver; the SELECT’s rows are the first result', () => {
    const sql = 'SELECT `t`.`id` AS `t_id` FROM `t` `t` WHERE `t`.`id` = ? LIMIT 1';
    expect(beginNotAtomic(begin, sql, [42])).to.deep.equal({ sql: `BEGIN NOT ATOMIC START TRANSACTION; ${sql}; END`, parameters: [42], result: 'first' });
    expect(beginNotAtomic('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; START TRANSACTION', 'select 1', [])?.sql).to.equal(
      'BEGIN NOT ATOMIC SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; START TRANSACTION; select 1; END',
    );
  });

  it('takes leading comments (an advisory lock’s key comment), and `;`, WAIT, NOWAIT, UPDATE and SHARE inside quotes, names and comments', () => {
    for (const sql of [
      '/* ormlock key=a;b ns=WAIT */ SELECT GET_LOCK(?, ?) AS acquired',
      "-- c;\nSELECT 'a;b', \"NOWAIT\", `wait`, 'it''s', `update`, 'FOR SHARE' FROM t # x; WAIT 1 FOR UPDATE",
      'SELECT CASE WHEN GET_LOCK(?, 0) = 1 THEN ? ELSE NULL END AS slot, CAST(NEXTVAL(`s`) AS CHAR) AS token',
      'SELECT waiter, nowaiting, await_, updated_at, shares FROM t',
      'SELECT 1 /* FOR UPDATE; */',
    ]) {
      expect(rides(sql), sql).to.equal(`BEGIN NOT ATOMIC START TRANSACTION; ${sql}; END`);
    }
  });

  it('a SELECT with a row lock (with WAIT n, NOWAIT, SKIP LOCKED) is pipelined: the logged text is BEGIN; SELECT, the SELECT keeps its parameters', () => {
    for (const sql of [
      'SELECT * FROM t WHERE id = ? LIMIT 1 FOR UPDATE',
      'SELECT * FROM t WHERE id = ? FOR UPDATE SKIP LOCKED',
      'select * from t where id = ? lock in share mode',
      'SELECT * FROM t FOR SHARE',
      'SELECT * FROM t WHERE id = ? FOR UPDATE WAIT 1',
      'SELECT * FROM t WHERE id = ? FOR UPDATE NOWAIT',
      'select * from t lock in share mode nowait',
      '/* ormlock key=a */ SELECT `t`.`id` FROM `t` WHERE `t`.`id` = ? FOR UPDATE',
    ]) {
      expect(beginNotAtomic(begin, sql, [1]), sql).to.deep.equal({ sql: `${begin}; ${sql}`, parameters: [1], result: 'pipelined' });
    }
  });

  it('refuses what would fail or run something else: writes, a second statement, backslashes, executable comments, unclosed quotes', () => {
    for (const sql of [
      'UPDATE t SET n = ? WHERE id = ?',
      'INSERT INTO t (n) VALUES (?)',
      'COMMIT',
      'WITH x AS (SELECT 1) SELECT * FROM x',
      'SELECT 1; DELETE FROM t',
      'SELECT * FROM t WHERE id = ? FOR UPDATE; DELETE FROM t',
      'SELECT * FROM t WHERE a = "\\" FOR UPDATE',
      "SELECT 'a\\'; DELETE FROM t; -- '",
      'SELECT /*!50000 1 */',
      '/*M!100000 SELECT */ 1',
      "SELECT 'unclosed",
      'SELECT 1 /* unclosed',
      'SELECTX 1',
    ]) {
      expect(rides(sql), sql).to.equal(undefined);
    }
  });

  it('decides again for each text: a verdict kept for one text is not another’s', () => {
    const how = (sql: string) => beginNotAtomic(begin, sql, [])?.result;
    expect(how('SELECT a FROM t')).to.equal('first');
    expect(how('SELECT a FROM t FOR UPDATE')).to.equal('pipelined');
    expect(how('SELECT a FROM t')).to.equal('first');
    expect(how('UPDATE t SET a = 1')).to.equal(undefined);
  });
});

describe('queryWithBegin: the driver’s answer narrowed to the statement’s', () => {
  const begun = { sql: 'BEGIN NOT ATOMIC START TRANSACTION; SELECT 1 AS n; END', parameters: [], result: 'first' as const };
  /** A runner whose query hands the text to a callback-style driver connection (mysql2), which answers `answer`. */
  function runner(answer: unknown) {
    const connection = {
      query(sql: string, parameters: unknown[], callback: (e: unknown, r?: unknown, f?: unknown) => void) {
        setImmediate(() => callback(null, answer, [[{ name: 'n' }], undefined]));
      },
    };
    const qr = { databaseConnection: connection } as unknown as QueryRunner;
    const query = (sql: string, parameters?: unknown[]) =>
      new Promise((resolve, reject) => connection.query(sql, parameters ?? [], (e, r, f) => (e ? reject(e) : resolve({ r, f }))));
    return { qr, query, connection };
  }

  it('a callback driver: the rows and fields of the SELECT, and the connection’s own query is put back', async () => {
    const { qr, query, connection } = runner([[{ n: 1 }], { affectedRows: 0 }]);
    const own = connection.query;
    expect(await queryWithBegin(qr, query as never, begun)).to.deep.equal({ r: [{ n: 1 }], f: [{ name: 'n' }] });
    expect(connection.query).to.equal(own);
    expect(Object.keys(connection)).to.deep.equal(['query']);
  });

  it('an answer that is not one result per statement fails loudly (LockConfigError naming the internal), never a row taken for the rows', async () => {
    const { qr, query } = runner([{ n: 1 }, { n: 2 }]);
    const error = await queryWithBegin(qr, query as never, begun).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(LockConfigError);
    expect((error as Error).message).to.contain('not one result per statement');
  });
});
