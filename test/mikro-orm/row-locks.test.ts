import { expect } from 'chai';
import { DeadlockError, LockNotAvailableError, LockTimeoutError, lock, transaction, withLock } from '../../src';
import { Barrier, race } from '../../src/testing';
import { MikroBilling, MkOrder, MkUser } from '../fixtures/mikro-billing';
import { describeEachMikroBackend } from '../support/mikro-suite';

describeEachMikroBackend('row locks', [MkUser, MkOrder], (env) => {
  const N = 20;

  async function seedUser(credits: number) {
    const em = env.orm.em.fork();
    const user = em.create(MkUser, { credits });
    await em.flush();
    const orderIds: number[] = [];
    for (let i = 0; i < N; i++) orderIds.push(em.create(MkOrder, { user, price: 10 }) && 0);
    await em.flush();
    const orders = await em.find(MkOrder, { user }, { orderBy: { id: 'asc' } });
    return { user, orderIds: orders.map((o) => o.id) };
  }

  async function creditsOf(id: number): Promise<number> {
    return (await env.orm.em.fork().findOneOrFail(MkUser, id)).credits;
  }

  async function runCharges(method: 'chargeUnlocked' | 'chargePessimistic' | 'chargeWithLock') {
    const { user, orderIds } = await seedUser(1000);
    const billing = new MikroBilling(env.orm);
    const results = await race(N, (i) => billing[method](user.id, orderIds[i]));
    const failures = results.filter((r) => r.status === 'rejected').map((f) => (f as PromiseRejectedResult).reason);
    return { credits: await creditsOf(user.id), failures };
  }

  it('control: 20 concurrent charges without a lock lose updates', async () => {
    const { credits, failures } = await runCharges('chargeUnlocked');
    expect(failures).to.deep.equal([]);
    expect(credits, 'lost updates expected without locking').to.be.greaterThan(1000 - N * 10);
  });

  it('@Pessimistic() on a service method using the global orm.em: 20 concurrent charges leave exact credits', async () => {
    const { credits, failures } = await runCharges('chargePessimistic');
    expect(failures).to.deep.equal([]);
    expect(credits).to.equal(1000 - N * 10);
  });

  it('withLock(user) on an entity loaded by another EntityManager: 20 concurrent charges leave exact credits', async () => {
    const { credits, failures } = await runCharges('chargeWithLock');
    expect(failures).to.deep.equal([]);
    expect(credits).to.equal(1000 - N * 10);
  });
});
