/**
 * The seed's `charge_user_for_order` on MikroORM: concurrent charges of one user read the same
 * credits and write back their own result. With `lock(user)` inside `transaction()` (`user.lock!`)
 * each charge reads the credits its predecessor wrote. The global `orm.em` is the transaction's.
 */
import type { MikroORM } from '@mikro-orm/core';
import { lock, transaction } from '../../../src';
import { race } from '../../../src/testing';
import { sleep, type Scenario } from '../../scenario';
import { MOrder, MUser } from '../schema';

const CHARGES = 20;
const PRICE = 10;

export const scenario: Scenario = {
  name: 'charge_user_for_order',
  strategy: 'lock(user) — Pessimistic',
  order: 20,
  async run(target, { locked }) {
    const orm = target as unknown as MikroORM;
    const seed = orm.em.fork();
    const user = seed.create(MUser, { name: 'alice', credits: 1_000 });
    const orders = Array.from({ length: CHARGES }, () => seed.create(MOrder, { user, price: PRICE }));
    await seed.flush();

    async function chargeUserForOrder(userId: number, orderId: number): Promise<void> {
      await transaction(async () => {
        const u = await orm.em.findOneOrFail(MUser, userId);
        const order = await orm.em.findOneOrFail(MOrder, orderId);
        if (locked) await lock(u); // user.lock!  — SELECT … FOR UPDATE, reloads u
        await sleep(10); // the work between read and write that makes the race likely
        u.credits -= order.price;
        order.paid = true; // flushed at commit
      });
    }

    const results = await race(CHARGES, (i) => chargeUserForOrder(user.id, orders[i].id));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw (failed[0] as PromiseRejectedResult).reason;
    const { credits } = await orm.em.fork().findOneOrFail(MUser, user.id);
    const lost = (credits - (1_000 - CHARGES * PRICE)) / PRICE;
    return { anomalies: lost, detail: `${lost} of ${CHARGES} charges lost (credits ${credits}, expected ${1_000 - CHARGES * PRICE})` };
  },
};
