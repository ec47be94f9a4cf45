import { withPessimistic, type PessimisticMethodOptions } from '../src/locks/pessimistic';
import { declare } from '../src/metadata/registry';
import { checkDecoratorOptions, rejectStandardDecorator, withDataSourceOf, wrapAsyncMethod, type ClassOrMethodDecorator } from './wrap-method';

/**
 * On an entity class: the entity's default row-lock policy (used by `lock`, `withLock`,
 * `lockParent` and locked reads), checked against the database at `installLocking`.
 * On an async method: runs it in a transaction where every entity read is locked
 * (twin: `withPessimistic`).
 *
 * ```ts
 * @Pessimistic({ timeoutMs: 2000 }) @Entity() class User { … }
 *
 * class Billing {
 *   @Pessimistic()
 *   async charge(userId: number, orderId: number) {
 *     const user = await this.users.findOneByOrFail({ id: userId });  // … FOR UPDATE
 *   }
 * }
 * ```
 * With several DataSources installed, `dataSource` names one; on a method it may be a function of
 * the instance: `@Pessimistic({ dataSource: (self: Reports) => self.analytics })`.
 */
export function Pessimistic(options: PessimisticMethodOptions = {}): ClassOrMethodDecorator {
  checkDecoratorOptions('Pessimistic', options);
  return ((target: any, propertyKey?: string | symbol, descriptor?: PropertyDescriptor) => {
    rejectStandardDecorator('Pessimistic', target, propertyKey);
    if (propertyKey === undefined) {
      const { entities: _e, dataSource: _d, ...policy } = options;
      declare(target, (rec) => (rec.pessimistic = policy));
      return;
    }
    return wrapAsyncMethod('Pessimistic', target, propertyKey, descriptor!, (original, methodName) => {
      const source = `@Pessimistic ${methodName}`;
      // a plain function returning withPessimistic's promise: one async layer less per call
      return function (this: unknown, ...args: unknown[]) {
        try {
          return withPessimistic(() => original.apply(this, args), withDataSourceOf(options, this, methodName, 'Pessimistic'), source);
        } catch (error) {
          return Promise.reject(error);
        }
      };
    });
  }) as ClassOrMethodDecorator;
}
