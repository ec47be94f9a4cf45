/**
 * The seed's `charge_user_for_order(user_id, order_id)`: concurrent charges of one user read the
 * same credits and write back their own result, losing each other's updates. With `user.lock!`
 * — here `lock(user)` inside `transaction()` — each charge reads the credits its predecessor
 * wrote.
 */
import type { DataSource } from 'typeorm';
import { lock, transaction } from '../../src';
import { race } from '../../src/testing';
import { sleep, type Scenario } from '../scenario';
import { Order, User } from '../schema';

const CHARGES = 20;
const PRICE = 10;

export const scenario: Scenario = {
  name: 'charge_user_for_order',
  strategy: 'lock(user) — Pessimistic',
  order: 20,
  async run(ds: DataSource, { locked }) {
    const users = ds.getRepository(User);
    const orders = ds.getRepository(Order);
    const user = await users.save(users.create({ name: 'alice', credits: 1_000 }));
    const orderIds = (await orders.save(Array.from({ length: CHARGES }, () => orders.create({ userId: user.id, price: PRICE })))).map((o) => o.id);

    async function chargeUserForOrder(userId: number, orderId: number): Promise<void> {
      await transaction(async () => {
        const u = await users.findOneByOrFail({ id: userId });
        const order = await orders.findOneByOrFail({ id: orderId });
        if (locked) await lock(u); // user.lock!  — SELECT … FOR UPDATE, reloads u
        await sleep(10); // the work between read and write that makes the race likely
        u.credits -= order.price;
        await users.save(u);
        order.paid = true;
        await orders.save(order);
      });
    }

    const results = await race(CHARGES, (i) => chargeUserForOrder(user.id, orderIds[i]));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) throw (failed[0] as PromiseRejectedResult).reason;
    const { credits } = await users.findOneByOrFail({ id: user.id });
    const lost = (credits - (1_000 - CHARGES * PRICE)) / PRICE;
    return { anomalies: lost, detail: `${lost} of ${CHARGES} charges lost (credits ${credits}, expected ${1_000 - CHARGES * PRICE})` };
  },
};
