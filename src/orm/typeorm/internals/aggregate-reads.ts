import { EntityManager } from 'typeorm';
import { dataSourceOf } from '../compat';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';
import { policyCovering, unlockableRead } from './query-builder';

const LABEL = 'EntityManager.prototype';

/** The repository/manager reads that answer with a number or a boolean, not rows, and why no row lock makes them exact. */
const AGGREGATES: Record<string, string> = {
  count: 'a count reads no row it could lock, and rows inserted meanwhile would not be counted',
  countBy: 'a count reads no row it could lock, and rows inserted meanwhile would not be counted',
  exists: 'an existence test reads no row it could lock, and rows inserted meanwhile would not be seen',
  existsBy: 'an existence test reads no row it could lock, and rows inserted meanwhile would not be seen',
  sum: 'FOR UPDATE cannot go with an aggregate, and rows inserted meanwhile would not be summed',
  average: 'FOR UPDATE cannot go with an aggregate, and rows inserted meanwhile would not be averaged',
  minimum: 'FOR UPDATE cannot go with an aggregate, and rows inserted meanwhile would not be seen',
  maximum: 'FOR UPDATE cannot go with an aggregate, and rows inserted meanwhile would not be seen',
};

/**
 * Inside a `@Pessimistic` method, `count()/countBy()/exists()/existsBy()/sum()/average()/minimum()/maximum()`
 * of a covered entity (on a repository or a manager) are refused by name: a lock on rows cannot make
 * their answer exact. Without a policy they run as TypeORM's.
 */
export const aggregateReadPatches: readonly InternalPatch[] = Object.entries(AGGREGATES).map(([method, why]) => ({
  name: `${LABEL}.${method}`,
  probe: () => expectMethod(EntityManager.prototype, LABEL, method),
  apply() {
    return replaceMethod(
      EntityManager.prototype,
      method,
      (base) =>
        function (this: EntityManager, target: unknown, ...rest: unknown[]) {
          const ds = dataSourceOf(this) as { hasMetadata?(t: unknown): boolean; getMetadata(t: unknown): { target: unknown; name: string } } | undefined;
          const metadata = ds?.hasMetadata?.(target) ? ds.getMetadata(target) : undefined;
          const policy = metadata && policyCovering(metadata);
          if (policy) return Promise.reject(unlockableRead(policy.source, `${method}()`, metadata!.name, why));
          return base.call(this, target, ...rest);
        },
    );
  },
}));
