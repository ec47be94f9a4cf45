import { badOptions } from '../src/faults/options';
import { retryOnConflict, retryOptionProblems, type RetryOptions } from '../src/locks/retry';
import { checkDecoratorOptions, wrapAsyncMethod } from './wrap-method';

/**
 * Re-runs the whole async method in a fresh transaction when it fails with a conflict:
 * `StaleEntityError` (a `@Versioned` entity changed since it was loaded), `DeadlockError`,
 * `SerializationError`, or the error classes / predicates in `on`. Exponential backoff with
 * full jitter between attempts. Twin: `retryOnConflict(fn, options)`.
 *
 * ```ts
 * class Counters {
 *   @RetryOnConflict({ attempts: 5 })
 *   async increment(id: number) {
 *     const c = await this.counters.findOneByOrFail({ id });
 *     c.value += 1;
 *     await this.counters.save(c);
 *   }
 * }
 * ```
 * Put it outermost: inside an already open transaction it cannot retry, and says so in the
 * error. A non-async method or bad options are a `LockConfigError` when the class is defined.
 */
export function RetryOnConflict(options: RetryOptions = {}): MethodDecorator {
  checkDecoratorOptions('RetryOnConflict', options);
  return (target, propertyKey, descriptor) =>
    wrapAsyncMethod('RetryOnConflict', target, propertyKey, descriptor, (original, methodName) => {
      const problems = retryOptionProblems(options);
      if (problems.length) throw badOptions(`@RetryOnConflict on ${methodName}`, problems, { method: methodName });
      const source = `@RetryOnConflict on ${methodName}`;
      return function (this: unknown, ...args: unknown[]) {
        return retryOnConflict(() => original.apply(this, args), options, source);
      };
    }) as any;
}
