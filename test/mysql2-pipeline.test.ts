import { expect } from 'chai';
import { LockConfigError } from '../src';
import { pipelines, sendPipelined } from '../src/orm/typeorm/internals/mysql2-pipeline';
import { backendUrl } from './support/backends';

/**
 * Opening statements written ahead of a statement on a bare mysql2 connection (what a TypeORM
 * transaction's locked first read does on MariaDB, test/begin-with-read.test.ts): the server
 * runs them first, each answered on its own; a failure among them reaches the statement's
 * callback, and the connection stays in step.
 */
describe('mysql2: opening statements written ahead of a statement (pipelined)', () => {
  type Callback = (error: unknown, rows?: unknown) => void;
  let url: string;
  before(async () => {
    const found = await backendUrl('mariadb');
    if (!found) throw new Error('MariaDB is not reachable');
    url = found;
  });

  async function withConnection(work: (c: import('mysql2').Connection, warnings: unknown[]) => Promise<void>) {
    const mysql = await import('mysql2');
    const c = mysql.createConnection({ uri: url });
    const warnings: unknown[] = [];
    c.on('warn', (w: unknown) => warnings.push(w));
    try {
      await work(c, warnings);
    } finally {
      await new Promise<void>((resolve) => c.end(() => resolve()));
    }
  }
  const ask = (c: import('mysql2').Connection, sql: string) =>
    new Promise<Array<Record<string, unknown>>>((resolve, reject) =>
      c.query(sql, (e: unknown, rows: unknown) => (e ? reject(e as Error) : resolve(rows as Array<Record<string, unknown>>))),
    );
  const pipelined = (c: import('mysql2').Connection, opening: string[], sql: string, values: unknown[] = []) =>
    new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
      const done: Callback = (e, rows) => (e ? reject(e as Error) : resolve(rows as Array<Record<string, unknown>>));
      sendPipelined(c, opening, () => c.query(sql, values, done));
    });

  it('runs the opening statements first, in one transaction with the statement, and keeps the connection in step', async () => {
    await withConnection(async (c, warnings) => {
      await ask(c, 'CREATE TABLE IF NOT EXISTS ormlock_pipeline_rows (id INT PRIMARY KEY) ENGINE=InnoDB');
      await ask(c, 'INSERT IGNORE INTO ormlock_pipeline_rows VALUES (1)');
      const rows = await pipelined(
        c,
        ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'START TRANSACTION'],
        'SELECT @@in_transaction AS t, ? AS v FROM ormlock_pipeline_rows WHERE id = 1 FOR UPDATE',
        ['x'],
      );
      expect(String(rows[0].t)).to.equal('1');
      expect(rows[0].v).to.equal('x');
      await new Promise((r) => setTimeout(r, 150)); // InnoDB's transaction table is refreshed every 0.1 s
      const [trx] = await ask(
        c,
        'SELECT trx_isolation_level AS level, trx_rows_locked AS locked FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()',
      );
      expect(trx.level).to.equal('SERIALIZABLE');
      expect(Number(trx.locked), 'the row lock is the transaction’s').to.be.at.least(1);
      await ask(c, 'COMMIT');
      expect(String((await ask(c, 'SELECT @@in_transaction AS t'))[0].t)).to.equal('0');
      expect(warnings, 'no packet out of order').to.deep.equal([]);
    });
  });

  it('an opening statement that fails: the statement’s callback gets that failure (its sql the opening statement’s), the statement’s own answer is read, the connection stays usable', async () => {
    await withConnection(async (c, warnings) => {
      const error = await pipelined(c, ['SET TRANSACTION ISOLATION LEVEL NOT_A_LEVEL', 'START TRANSACTION'], 'SELECT 1 AS n').catch((e: unknown) => e);
      expect(error).to.be.instanceOf(Error);
      expect((error as { code?: string }).code).to.equal('ER_PARSE_ERROR');
      expect((error as { sql?: string }).sql).to.equal('SET TRANSACTION ISOLATION LEVEL NOT_A_LEVEL');
      // START TRANSACTION still ran (the server runs each command), and the next answers are the next queries'
      expect(String((await ask(c, 'SELECT @@in_transaction AS t'))[0].t)).to.equal('1');
      await ask(c, 'ROLLBACK');
      expect((await ask(c, 'SELECT 2 AS n'))[0].n).to.equal(2);
      // the statement's own failure is reported when the opening succeeded
      const own = await pipelined(c, ['START TRANSACTION'], 'SELECT * FROM no_such_table_ormlock').catch((e: unknown) => e);
      expect((own as { code?: string }).code).to.equal('ER_NO_SUCH_TABLE');
      await ask(c, 'ROLLBACK');
      expect((await ask(c, 'SELECT 3 AS n'))[0].n).to.equal(3);
      expect(warnings, 'no packet out of order').to.deep.equal([]);
    });
  });

  it('works through the promise() wrapper (TypeORM 1.x) and on a command queued behind a running one', async () => {
    await withConnection(async (c) => {
      const p = c.promise();
      const slow = ask(c, 'SELECT SLEEP(0.05) AS s');
      const [rows] = (await sendPipelined(p, ['START TRANSACTION'], () => p.query('SELECT @@in_transaction AS t'))) as unknown as [Array<{ t: unknown }>];
      await slow;
      expect(String(rows[0].t)).to.equal('1');
      await ask(c, 'ROLLBACK');
    });
  });

  it('pipelines only on an uncompressed mysql2 connection, and fails loudly (LockConfigError naming the internal) where the shape differs', async () => {
    await withConnection(async (c) => {
      expect(pipelines(c)).to.equal(true);
      expect(pipelines(c.promise())).to.equal(true);
    });
    expect(pipelines({ query() {} })).to.equal(false); // not mysql2 (pg's client)
    expect(pipelines({ addCommand() {}, config: { compress: true } })).to.equal(false);
    const noWrite = { addCommand() {}, sequenceId: 0 };
    expect(() => sendPipelined(noWrite, ['START TRANSACTION'], () => undefined))
      .to.throw(LockConfigError, /BEGIN written ahead of the first statement \(mysql2\)/)
      .with.property('message')
      .that.matches(/not a mysql2 connection/);
    const nothingQueued = { addCommand() {}, write() {}, sequenceId: 0 };
    expect(() => sendPipelined(nothingQueued, ['START TRANSACTION'], () => undefined)).to.throw(LockConfigError, /queued no command/);
    const odd = { addCommand(command: unknown) {}, write() {}, sequenceId: 0 };
    expect(() => sendPipelined(odd, ['START TRANSACTION'], () => odd.addCommand({}))).to.throw(LockConfigError, /no execute\(\) or no callback/);
    expect(Object.prototype.hasOwnProperty.call(odd, 'addCommand'), 'its own addCommand put back').to.equal(true);
  });
});
