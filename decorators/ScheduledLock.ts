import { badOptions } from '../src/faults/options';
import { withScheduledLock, type ScheduledLockOptions } from '../src/locks/scheduled';
import { scheduledLockProblems } from '../src/locks/scheduled-options';
import { withDataSourceOf, wrapAsyncMethod } from './wrap-method';

/**
 * Options of `@ScheduledLock`: those of `withScheduledLock`, where `dataSource` and `redlock` may
 * also be functions of the instance, called at each call (`{ redlock: (self: Jobs) => self.redlock }`
 * names one injected in the constructor).
 */
export interface ScheduledLockDecoratorOptions extends Omit<ScheduledLockOptions, 'redlock' | 'dataSource'> {
  dataSource?: unknown | ((self: any) => unknown);
  redlock?: unknown | ((self: any) => unknown);
}

/**
 * Runs the decorated async method at most once across all instances per schedule tick
 * (`withScheduledLock`): a call while another instance holds `name` is skipped and resolves
 * `undefined`.
 *
 * ```ts
 * class Reports {
 *   @Cron('0 * * * * *')
 *   @ScheduledLock('hourly-report', { lockAtMostFor: 60_000, lockAtLeastFor: 5_000 })
 *   async send() { … }
 * }
 * ```
 */
export function ScheduledLock(name: string, options: ScheduledLockDecoratorOptions): MethodDecorator {
  const problems = scheduledLockProblems(name, options);
  if (problems.length) throw badOptions('@ScheduledLock(name, options)', problems, { key: name });
  return (target, propertyKey, descriptor) =>
    wrapAsyncMethod(
      'ScheduledLock',
      target,
      propertyKey,
      descriptor,
      (original, methodName) =>
        async function (this: unknown, ...args: unknown[]) {
          const resolved = withDataSourceOf(options, this, methodName, 'ScheduledLock');
          const redlock = typeof resolved.redlock === 'function' ? (resolved.redlock as (self: unknown) => unknown).call(this, this) : resolved.redlock;
          const run = await withScheduledLock(name, { ...resolved, redlock } as ScheduledLockOptions, () => original.apply(this, args));
          return run.ran ? run.result : undefined;
        },
    ) as any;
}
