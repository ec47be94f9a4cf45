import { missingKey, notARedlock } from '../src/faults/decorators';
import { badOption } from '../src/faults/options';
import type { KeyFunctionArgs, KeyedMethodDecorator } from './keyed-decorator';
import { wrapAsyncMethod } from './wrap-method';
import { Redlock } from '../src/redis/redlock';
import type { LockKeys } from '../src/redis/redlock';
import { DistributedLockCallOptions, withDistributedLock } from '../src/redis/with-distributed-lock';

/** A key, or a function of the method's arguments (called with the instance as `this`) returning one. */
export type DistributedLockKey = LockKeys | ((...args: any[]) => LockKeys);

export interface DistributedLockOptions extends DistributedLockCallOptions {
  /**
   * The Redlock to use, or a function returning it, resolved at each call and given the instance
   * (also as `this`): `redlock: (self: Payments) => self.redlock` names one injected in the
   * constructor (NestJS `@InjectRedlock()`), or one built after the class was defined.
   */
  redlock: Redlock | ((self: any) => Redlock);
  /** Lease TTL in ms; the lease is extended automatically while the method runs. */
  ttlMs: number;
}

/**
 * Runs the decorated async method under a Redis lease (`withDistributedLock`): calls with the
 * same key, in any process, run one at a time.
 *
 * ```ts
 * class Payments {
 *   @DistributedLock((accountId: string) => `account:${accountId}`, { redlock, ttlMs: 5_000 })
 *   async settle(accountId: string) { … }
 * }
 * ```
 * With a Redlock injected in the constructor (NestJS): `{ redlock: (self: Payments) => self.redlock, ttlMs }`.
 * A non-async method, a bad TTL or a missing `redlock` is a `LockConfigError` naming
 * `Class.method` when the class is defined.
 */
export function DistributedLock<K extends DistributedLockKey>(key: K, options: DistributedLockOptions): KeyedMethodDecorator<KeyFunctionArgs<K>> {
  return ((target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor): PropertyDescriptor =>
    wrapAsyncMethod('DistributedLock', target, propertyKey, descriptor, (original, method) => {
      if (key === undefined || key === null || (typeof key === 'string' && key.length === 0)) {
        throw missingKey(`@DistributedLock on ${method}`, key, { method });
      }
      if (!options || (!(options.redlock instanceof Redlock) && typeof options.redlock !== 'function')) {
        throw badOption(`@DistributedLock on ${method}`, 'options.redlock', 'a Redlock or a function returning one', options?.redlock, { method });
      }
      if (!Number.isInteger(options.ttlMs) || options.ttlMs <= 0) {
        throw badOption(`@DistributedLock on ${method}`, 'options.ttlMs', 'a positive integer', options.ttlMs, { method });
      }
      const { redlock, ttlMs, ...callOptions } = options;
      return function distributedLocked(this: unknown, ...args: unknown[]): Promise<unknown> {
        const instance = redlock instanceof Redlock ? redlock : redlock.call(this, this);
        if (!(instance instanceof Redlock)) {
          return Promise.reject(notARedlock(method, instance));
        }
        let lockKey: LockKeys;
        try {
          lockKey = typeof key === 'function' ? (key as (...a: unknown[]) => LockKeys).apply(this, args) : key;
        } catch (error) {
          return Promise.reject(error);
        }
        return withDistributedLock(instance, lockKey, ttlMs, () => original.apply(this, args) as Promise<unknown>, callOptions);
      };
    })) as KeyedMethodDecorator<KeyFunctionArgs<K>>;
}
