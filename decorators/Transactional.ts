import { runTransaction, transactionOptionProblems, type TransactionOptions } from '../src/context/transaction';
import { badOptions } from '../src/faults/options';
import { withDataSourceOf, wrapAsyncMethod } from './wrap-method';

/**
 * Runs the method in a transaction (joins the ambient one by default). The twin of `transaction()`.
 *
 * ```ts
 * class Billing {
 *   @Transactional({ isolation: 'SERIALIZABLE' })
 *   async charge(userId: number) { … }
 * }
 * ```
 * `dataSource` may be a function of the instance, called at each call: `{ dataSource: (self: Reports) => self.analytics }`.
 */
export function Transactional(options: TransactionOptions = {}): MethodDecorator {
  const problems = transactionOptionProblems(options);
  if (problems.length) throw badOptions('@Transactional(options?)', problems);
  return (target, propertyKey, descriptor) =>
    wrapAsyncMethod(
      'Transactional',
      target,
      propertyKey,
      descriptor,
      (original, methodName) =>
        // the options' shape was checked above, once (a dataSource function's result is not part of it);
        // a plain function returning runTransaction's promise (which never throws): one async layer less
        function (this: unknown, ...args: unknown[]) {
          try {
            return runTransaction(() => original.apply(this, args), withDataSourceOf(options, this, methodName, 'Transactional'), true);
          } catch (error) {
            return Promise.reject(error);
          }
        },
    ) as any;
}
