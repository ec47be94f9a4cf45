/**
 * createOrFind while the first inserter rolls back: 29 callers wait on the
 * unique key behind an uncommitted INSERT; it rolls back. On MariaDB the waiting INSERTs then
 * deadlock among themselves (InnoDB 1213 ends the whole transaction). Outside a transaction a
 * deadlocked autocommit INSERT is simply retried by createOrFind itself; inside one (a savepoint),
 * the error comes out as the retryable DeadlockError — never "SAVEPOINT … does not exist" — and
 * retryOnConflict retries it. Either way: one row, one id, no error.
 */
import { expect } from 'chai';
import { createOrFind, retryOnConflict, transaction, DeadlockError } from '../src';
import { EDGE_ENTITIES, EdgeMember, sleep } from './fixtures/edges';
import { describeEachBackend, type SuiteEnv } from './support/suite';

const CALLERS = 29;

/** How many connections of this test database wait for a row lock now. */
async function waiting(env: SuiteEnv): Promise<number> {
  if (env.name === 'postgres') {
    const [row] = await env.ds.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
    return Number(row.n);
  }
  // INSERTs of edge_members still running (waiting behind the first inserter's key lock)
  const rows: Array<{ info: string | null }> = await env.ds.query(
    "SELECT info FROM information_schema.processlist WHERE db = DATABASE() AND command = 'Query' AND info LIKE 'INSERT INTO `edge_members`%'",
  );
  return rows.length;
}

describeEachBackend('edges: createOrFind while the first inserter rolls back', EDGE_ENTITIES, (env) => {
  const members = () => env.ds.getRepository(EdgeMember);

  /** Holds an uncommitted INSERT of `email` while `callers` start and wait on it; then rolls it back. */
  async function behindARollback<T>(email: string, caller: () => Promise<T>): Promise<PromiseSettledResult<T>[]> {
    const first = env.ds.createQueryRunner();
    await first.connect();
    await first.startTransaction();
    await first.manager.insert(EdgeMember, { email, name: 'first' });
    const calls = Promise.allSettled(Array.from({ length: CALLERS }, () => caller()));
    // all of them wait behind the first inserter's row lock before it rolls back
    for (let i = 0; i < 500 && (await waiting(env)) < CALLERS; i++) await sleep(10);
    expect(await waiting(env), 'every caller waits behind the first inserter').to.be.at.least(CALLERS);
    await first.rollbackTransaction();
    await first.release();
    return calls;
  }

  async function expectOneRow(results: PromiseSettledResult<EdgeMember>[], email: string): Promise<void> {
    const errors = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String(r.reason?.stack ?? r.reason));
    expect(errors, 'no caller failed').to.deep.equal([]);
    const ids = new Set(results.map((r) => (r as PromiseFulfilledResult<EdgeMember>).value.id));
    expect(ids.size, 'one id for all callers').to.equal(1);
    expect(await members().countBy({ email }), 'one row').to.equal(1);
  }

  it(`${CALLERS} createOrFind outside a transaction (autocommit): one row, one id, no error`, async () => {
    const email = `auto-${env.name}@x`;
    env.log.start();
    const results = await behindARollback(email, () => createOrFind(members(), { email }, { name: 'caller' }));
    const inserts = env.log.stop().filter((q) => /^INSERT INTO .edge_members/i.test(q)).length;
    await expectOneRow(results, email);
    console.log(`      [${env.name}] ${inserts - 1 - CALLERS} INSERTs retried after a deadlock`);
  });

  it(`${CALLERS} createOrFind inside transactions under retryOnConflict: one row, one id, no error; a deadlock comes out as DeadlockError`, async () => {
    const email = `tx-${env.name}@x`;
    const seen: string[] = [];
    const results = await behindARollback(email, () =>
      retryOnConflict(() => transaction(() => createOrFind(members(), { email }, { name: 'caller' })), {
        attempts: 10,
        onRetry: ({ error }) => seen.push((error as Error).constructor.name),
      }),
    );
    await expectOneRow(results, email);
    for (const name of seen) expect(name).to.equal(DeadlockError.name);
    console.log(`      [${env.name}] ${seen.length} attempts retried on DeadlockError`);
  });

  it(`${CALLERS} createOrFind inside transactions without retryOnConflict: every failure is the retryable DeadlockError, never a savepoint error`, async () => {
    const email = `bare-${env.name}@x`;
    const results = await behindARollback(email, () => transaction(() => createOrFind(members(), { email }, { name: 'caller' })));
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
    for (const f of failures) expect(f, String(f?.stack ?? f)).to.be.instanceOf(DeadlockError);
    const ids = new Set(results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<EdgeMember>).value.id));
    expect(ids.size).to.equal(1);
    expect(await members().countBy({ email })).to.equal(1);
    console.log(`      [${env.name}] ${failures.length} of ${CALLERS} ended by a deadlock`);
  });
});
