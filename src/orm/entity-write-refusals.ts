import { LockConfigError } from '../errors';

/**
 * The refusal of a write to an entity with `@AdvisoryLock(entity => key)` whose rows cannot be
 * known before it runs, so no key can be computed (one wording for every ORM and entry point):
 * `write` names the call, `why` says why its rows are unknown, `instead` what to call.
 */
export function advisoryKeyUnknown(entity: string, write: string, why: string, instead: string): LockConfigError {
  return new LockConfigError(
    `@AdvisoryLock on ${entity}: this ${write} has no entity to compute the lock key from (${why}); use ${instead}, ` +
      'or take the lock yourself with withAdvisoryLock()',
    { entity, call: write },
  );
}
