/**
 * Type tests, checked by `npm run typecheck` (never run): what must compile and, under
 * `@ts-expect-error`, what must not.
 */
import type { DataSource, EntityManager, Repository } from 'typeorm';
import type { MikroORM } from '@mikro-orm/core';
import { AdvisoryLock, createOrFind, currentManager, DistributedLock, Redlock } from '../../src';

declare const redlock: Redlock;

export class Jobs {
  @AdvisoryLock((day: string) => `report:${day}`)
  async job(day: string): Promise<void> {}

  // @ts-expect-error the key function takes a number, the method a string
  @AdvisoryLock((day: number) => `report:${day}`)
  async wrongKey(day: string): Promise<void> {}

  @AdvisoryLock((userId: number) => `charge:${userId}`)
  async charge(userId: number, orderId: number): Promise<number> {
    return userId + orderId;
  }

  @AdvisoryLock('s3-sync', { scope: 'session' })
  async sync(): Promise<void> {}

  @DistributedLock((id: string) => `pay:${id}`, { redlock, ttlMs: 1_000 })
  async pay(id: string): Promise<void> {}

  // @ts-expect-error the key function takes a number, the method a string
  @DistributedLock((id: number) => `pay:${id}`, { redlock, ttlMs: 1_000 })
  async wrongPay(id: string): Promise<void> {}
}

class Account {
  id!: number;
  email!: string;
  name!: string;
}

export async function defaults(accounts: Repository<Account>): Promise<Account> {
  await createOrFind(accounts, { email: 'a@b.c' }, { name: 'A' });
  // @ts-expect-error name is a string
  return createOrFind(accounts, { email: 'a@b.c' }, { name: 42 });
}

type IsAny<T> = 0 extends 1 & T ? true : false;
export function managers(ds: DataSource, orm: MikroORM): void {
  const typeorm: EntityManager = currentManager(ds);
  const mikro: MikroORM['em'] = currentManager(orm);
  const ambient = currentManager();
  const notAny: IsAny<typeof ambient> = false;
  void [typeorm, mikro, ambient, notAny];
}
