import { badOptions } from '../src/faults/options';
import { runWithSemaphore } from '../src/locks/semaphore';
import { checkPermits, checkSemaphoreName, semaphoreOptionProblems, type SemaphoreOptions } from '../src/locks/semaphore-options';
import { checkDecoratorOptions, withDataSourceOf, wrapAsyncMethod } from './wrap-method';

/** `@Semaphore`'s options: those of `withSemaphore`, and `dataSource` may be a function of the instance. */
export type SemaphoreDecoratorOptions = Omit<SemaphoreOptions, 'dataSource'> & { dataSource?: unknown | ((self: any) => unknown) };

/**
 * On an async method: runs it holding one of `permits` permits of the database semaphore
 * `name`, so at most `permits` calls run at once across processes (twin: `withSemaphore`).
 * The method finds the permit's signal as `currentLockSignal()`.
 *
 * ```ts
 * class Reports {
 *   @Semaphore('report-export', 3)
 *   async export(id: number) { … }                  // at most 3 exports at once, anywhere
 *
 *   @Semaphore('geo-api', 5, { timeoutMs: 0, onTimeout: 'skip' })
 *   async geocode(address: string) { … }           // undefined when all 5 are busy
 * }
 * ```
 *
 * A non-async method, a bad name, bad permits or bad options are a LockConfigError naming
 * `Class.method` when the class is defined.
 */
export function Semaphore(name: string, permits: number, options: SemaphoreDecoratorOptions = {}): MethodDecorator {
  checkDecoratorOptions('Semaphore', options, 'name, permits, options?');
  return ((target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor) =>
    wrapAsyncMethod('Semaphore', target, propertyKey, descriptor, (original, methodName) => {
      const subject = { label: `@Semaphore on ${methodName}`, method: methodName };
      checkSemaphoreName(name, subject.label);
      checkPermits(permits, subject.label, name);
      const lazyDataSource = typeof options?.dataSource === 'function';
      const problems = semaphoreOptionProblems(lazyDataSource ? { ...options, dataSource: undefined } : options);
      if (problems.length) throw badOptions(subject.label, problems, { method: methodName });
      return async function (this: unknown, ...args: unknown[]) {
        const resolved = withDataSourceOf(options, this, methodName, 'Semaphore') as SemaphoreOptions;
        return runWithSemaphore(name, permits, () => original.apply(this, args), resolved, subject);
      };
    })) as MethodDecorator;
}
