/**
 * MikroORM: a driver connection ormlock pinned goes back to knex's pool only when the connection
 * model says it is clean (no transaction open, no lock ormlock took, alive); otherwise it is
 * destroyed — warning ORMLOCK_CONNECTION_DISCARDED, `lost` events for the locks it held — as
 * TypeORM's QueryRunners are (test/compositions.test.ts). Each case has its control: the same
 * connection, clean, stays alive in the pool.
 */
import { expect } from 'chai';
import { noteLock } from '../../src/context/connection-model';
import type { LockEvent } from '../../src';
import { resolveInstallation, type Installation } from '../../src/installations';
import type { PortTransaction } from '../../src/orm/port';
import { MkLcRow } from '../fixtures/lost-connection';
import { asAdmin } from '../support/kill-connection';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { sleep } from '../support/suite';

const events: LockEvent[] = [];

describeEachMikroBackend('a pinned connection given back (MikroORM)', [MkLcRow], (env) => {
  let inst: Installation;
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }) => {
    if (w.code === 'ORMLOCK_CONNECTION_DISCARDED') warnings.push(w.message);
  };
  before(() => {
    inst = resolveInstallation('test', { explicit: env.orm });
    process.on('warning', onWarning);
  });
  after(() => process.off('warning', onWarning));
  beforeEach(() => {
    warnings.length = 0;
    events.length = 0;
  });

  const idOf = async (tx: PortTransaction) => Number((await tx.connection.query(env.handle.dialect.connectionIdSql))[0].connectionId);
  const alive = (id: number) =>
    asAdmin(env.name, async (query) => {
      const rows =
        env.name === 'postgres'
          ? await query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [id])
          : await query('SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ?', [id]);
      return rows.length > 0;
    });
  /** True when the backend `id` is gone within a second. */
  const goneSoon = async (id: number) => {
    for (let i = 0; i < 20; i++) {
      if (!(await alive(id))) return true;
      await sleep(50);
    }
    return false;
  };

  it('a transaction still open when its connection is given back: destroyed, reported', async () => {
    const tx = await inst.port.begin({});
    const id = await idOf(tx);
    await tx.release(); // no COMMIT / ROLLBACK
    expect(warnings.join('\n')).to.match(/destroyed instead of going back to the pool: a transaction is still open on it/);
    expect(await goneSoon(id), 'the backend is gone').to.equal(true);
  });

  it('control: the same transaction committed first goes back to the pool alive, no warning', async () => {
    const tx = await inst.port.begin({});
    const id = await idOf(tx);
    await tx.commit();
    await tx.release();
    expect(warnings).to.deep.equal([]);
    await sleep(300);
    expect(await alive(id), 'the backend is still there (pooled)').to.equal(true);
  });

  it('a lock ormlock took still held when a session connection is given back: destroyed, `lost` reported', async () => {
    const tx = await inst.port.connect({});
    const id = await idOf(tx);
    const wrapped = { ...inst, emit: (e: LockEvent) => events.push(e) } as unknown as Installation;
    noteLock(tx.connection, { inst: wrapped, kind: 'advisory', id: '42', display: `discard-${process.pid}` }, 'session');
    await tx.release();
    expect(warnings.join('\n')).to.match(/it still holds advisory lock discard-/);
    expect(events.map((e) => e.type)).to.deep.equal(['lost']);
    expect(await goneSoon(id), 'the backend is gone').to.equal(true);
  });

  it('control: a session connection holding nothing goes back to the pool alive', async () => {
    const tx = await inst.port.connect({});
    const id = await idOf(tx);
    await tx.release();
    expect(warnings).to.deep.equal([]);
    await sleep(300);
    expect(await alive(id), 'the backend is still there (pooled)').to.equal(true);
  });

  it('the pool stays usable after destroying connections (the destroyed one is never handed out)', async () => {
    for (let i = 0; i < 3; i++) {
      const tx = await inst.port.begin({});
      await tx.release();
    }
    const results = await Promise.all([1, 2, 3, 4, 5].map(() => env.orm.em.fork().count(MkLcRow, {})));
    expect(results).to.have.length(5);
  });
});
