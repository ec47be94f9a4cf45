import { missingKey } from '../src/faults/decorators';
import { invalidAdvisoryKey } from '../src/faults/keys';
import { badOptions } from '../src/faults/options';
import { AdvisoryKeySet, canonicalAdvisoryKey, describeKey, STATIC_ADVISORY_KEY, type AdvisoryKey } from '../src/locks/advisory-key';
import { advisoryOptionProblems, runWithAdvisoryLock, type AdvisoryLockOptions } from '../src/locks/advisory';
import { declare } from '../src/metadata/registry';
import type { KeyFunctionArgs, KeyedClassOrMethodDecorator } from './keyed-decorator';
import { checkDecoratorOptions, rejectStandardDecorator, withDataSourceOf, wrapAsyncMethod } from './wrap-method';

/** A key, or a function returning one: of the method's arguments (with the instance as `this`), or of the entity being written. */
export type AdvisoryLockKey = AdvisoryKey | ((...args: any[]) => AdvisoryKey);

/**
 * On an async method: runs it holding the advisory lock on `key` (twin: `withAdvisoryLock`).
 * The lock is taken before the method's body starts, so what the body loads is fresh.
 *
 * ```ts
 * class Billing {
 *   @AdvisoryLock((userId: number) => `charge:${userId}`)
 *   async charge(userId: number, orderId: number) { … }   // loads user and order inside
 *
 *   @AdvisoryLock('s3-sync', { scope: 'session', timeoutMs: 0, onTimeout: 'skip' })
 *   async sync() { … }                                    // at most one run at a time, anywhere
 * }
 * ```
 *
 * On an entity class: `@AdvisoryLock((doc: Doc) => ['doc', doc.slot])` takes the lock around
 * every insert/update/remove of that entity, inside the write's transaction, held until it
 * ends (checked at installLocking: transaction scope only, no `onTimeout: 'skip'`).
 *
 * On a method, `dataSource` may be a function of the instance, called at each call:
 * `@AdvisoryLock(key, { dataSource: (self: Reports) => self.analytics })`.
 *
 * A non-async method, a bad constant key or bad options are a LockConfigError naming
 * `Class.method` when the class is defined; a key function that throws or returns nothing
 * is one at the call.
 */
export function AdvisoryLock<K extends AdvisoryLockKey>(key: K, options: AdvisoryLockOptions = {}): KeyedClassOrMethodDecorator<KeyFunctionArgs<K>> {
  checkDecoratorOptions('AdvisoryLock', options, 'key, options?');
  if (key === undefined || key === null) {
    throw missingKey('@AdvisoryLock(key, options?)', key);
  }
  return ((target: any, propertyKey?: string | symbol, descriptor?: PropertyDescriptor) => {
    rejectStandardDecorator('AdvisoryLock', target, propertyKey);
    if (propertyKey === undefined) {
      // Entity class: record only; installLocking validates against the database.
      const keyFn = typeof key === 'function' ? (key as (entity: unknown) => unknown) : Object.assign(() => key, { [STATIC_ADVISORY_KEY]: key });
      declare(target, (rec) => rec.advisory.push({ key: keyFn, options: (options ?? {}) as Record<string, unknown> }));
      return;
    }
    return wrapAsyncMethod('AdvisoryLock', target, propertyKey, descriptor!, (original, methodName) => {
      const subject = { label: `@AdvisoryLock on ${methodName}`, method: methodName };
      // on a method, dataSource may be a function of the instance (resolved at each call)
      const lazyDataSource = typeof (options as { dataSource?: unknown } | undefined)?.dataSource === 'function';
      const problems = advisoryOptionProblems(lazyDataSource ? { ...options, dataSource: undefined } : options);
      if (problems.length) throw badOptions(subject.label, problems, { method: methodName });
      if (typeof key !== 'function') {
        if (key instanceof AdvisoryKeySet) {
          if (key.keys.length === 0) throw invalidAdvisoryKey(subject.label, describeKey(key), 'advisoryKeys() was given no keys', { key, method: methodName });
          for (const k of key.keys) canonicalAdvisoryKey(k, subject);
        } else {
          canonicalAdvisoryKey(key, subject);
        }
      }
      // the options' shape is checked above, once; a dataSource function's result is checked at each call
      const checked = !lazyDataSource;
      // a plain function returning runWithAdvisoryLock's promise (which never throws): one async layer less per call
      return function (this: unknown, ...args: unknown[]) {
        try {
          return runWithAdvisoryLock(
            key,
            this,
            args,
            () => original.apply(this, args),
            checked ? options : withDataSourceOf(options, this, methodName, 'AdvisoryLock'),
            subject,
            checked,
          );
        } catch (error) {
          return Promise.reject(error);
        }
      };
    });
  }) as KeyedClassOrMethodDecorator<KeyFunctionArgs<K>>;
}
