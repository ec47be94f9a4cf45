import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { AdvisoryLock, DistributedLock, Pessimistic, Redlock, Transactional } from '../../src'; // in your app: from 'ormlock'
import { InjectRedlock } from '../../src/nestjs'; // in your app: from 'ormlock/nestjs'
import { Account, Order } from './entities';

/** How long a charge waits between reading and writing (a slow payment gateway, say). */
const GATEWAY_MS = 10;
const gateway = () => new Promise<void>((r) => setTimeout(r, GATEWAY_MS));

export type ChargeMode = 'none' | 'row' | 'advisory' | 'lease';

/**
 * The seed's charge_user_for_order: read the account and the order, call the gateway, write
 * both. Four times the same body: without a lock (loses charges under concurrency), with a row
 * lock, with an advisory lock keyed by the account, with a Redis lease.
 */
@Injectable()
export class BillingService {
  constructor(
    @InjectRepository(Account) private readonly accounts: Repository<Account>,
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @InjectRedlock() readonly redlock: Redlock | null, // null when REDIS_URL is not set
  ) {}

  private async chargeBody(accountId: number, orderId: number): Promise<void> {
    const account = await this.accounts.findOneByOrFail({ id: accountId });
    const order = await this.orders.findOneByOrFail({ id: orderId, accountId });
    if (order.paid) return;
    await gateway();
    account.credits -= order.price;
    order.paid = true;
    await this.accounts.save(account);
    await this.orders.save(order);
  }

  /** No lock: concurrent charges of one account overwrite each other's credits. */
  @Transactional()
  async chargeWithoutLock(accountId: number, orderId: number): Promise<void> {
    await this.chargeBody(accountId, orderId);
  }

  /** Every read inside is SELECT … FOR UPDATE: the second charge waits for the first's commit. */
  @Pessimistic()
  async chargeWithRowLock(accountId: number, orderId: number): Promise<void> {
    await this.chargeBody(accountId, orderId);
  }

  /** One advisory lock per account, keyed from the method's first argument, taken before the body reads. */
  @AdvisoryLock((accountId: number) => ['account', accountId])
  async chargeWithAdvisoryLock(accountId: number, orderId: number): Promise<void> {
    await this.chargeBody(accountId, orderId);
  }

  /** A Redis lease per account (across every process of the app), with the Redlock Nest injected. */
  @DistributedLock((accountId: number) => `account:${accountId}`, {
    redlock: (self: BillingService) => self.redlock!,
    ttlMs: 10_000,
    retryCount: 200,
    retryDelayMs: 25,
  })
  async chargeWithLease(accountId: number, orderId: number): Promise<void> {
    await this.chargeBody(accountId, orderId);
  }

  charge(mode: ChargeMode, accountId: number, orderId: number): Promise<void> {
    if (mode === 'row') return this.chargeWithRowLock(accountId, orderId);
    if (mode === 'advisory') return this.chargeWithAdvisoryLock(accountId, orderId);
    if (mode === 'lease') return this.chargeWithLease(accountId, orderId);
    return this.chargeWithoutLock(accountId, orderId);
  }

  async open(credits: number, orders: number, price: number): Promise<{ account: Account; orderIds: number[] }> {
    const account = await this.accounts.save(this.accounts.create({ credits }));
    const created = await this.orders.save(Array.from({ length: orders }, () => this.orders.create({ accountId: account.id, price })));
    return { account, orderIds: created.map((o) => o.id) };
  }

  account(id: number): Promise<Account> {
    return this.accounts.findOneByOrFail({ id });
  }
}
