import { transaction, transactionOptionProblems, type TransactionOptions } from '../src/context/transaction';
import { LockConfigError } from '../src/errors';
import { wrapAsyncMethod } from './wrap-method';

/**
 * Runs the method in a transaction (joins the ambient one by default). The twin of `transaction()`.
 *
 * ```ts
 * class Billing {
 *   @Transactional({ isolation: 'SERIALIZABLE' })
 *   async charge(userId: number) { … }
 * }
 * ```
 */
export function Transactional(options: TransactionOptions = {}): MethodDecorator {
  const problems = transactionOptionProblems(options);
  if (problems.length) throw new LockConfigError(`@Transactional(options?): ${problems.join('; ')}`);
  return (target, propertyKey, descriptor) =>
    wrapAsyncMethod('Transactional', target, propertyKey, descriptor, (original) => {
      return function (this: unknown, ...args: unknown[]) {
        return transaction(() => original.apply(this, args), options);
      };
    }) as any;
}
