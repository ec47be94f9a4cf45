import type { EntityMetadata } from 'typeorm';
import { badOptions } from '../../faults/options';
import { checkAdvisoryOptionsFor, advisoryOptionProblems } from '../../locks/advisory';
import { canonicalAdvisoryKey, STATIC_ADVISORY_KEY } from '../../locks/advisory-key';
import { AdvisoryEntitySubscriber } from './advisory-subscriber';
import type { TypeOrmFeature } from './feature';

/**
 * `@AdvisoryLock(entity => key, opts?)` on entity classes, and the end-of-transaction release
 * of MySQL/MariaDB "transaction-scoped" advisory locks.
 *
 * At installLocking every declaration is checked: the key is a function (or a valid constant
 * key), the options are well formed, the scope is `transaction` (the lock must be held until
 * the write commits), `onTimeout` is not `skip` (a write cannot be skipped from a subscriber),
 * no `dataSource` option (the entity's own is used), and `shared` only where the database has
 * shared advisory locks.
 */
export const advisoryFeature: TypeOrmFeature = {
  name: 'advisory',
  validate(entity: EntityMetadata, declared, { dialect }) {
    for (const decl of declared.advisory) {
      const subject = { label: `@AdvisoryLock on ${entity.name}`, entity: entity.name };
      const fail = (why: string) => {
        throw badOptions(subject.label, [why], { entity: entity.name });
      };
      if (typeof decl.key !== 'function') fail('the key must be a function of the entity (or a constant key)');
      if (STATIC_ADVISORY_KEY in decl.key) canonicalAdvisoryKey((decl.key as any)[STATIC_ADVISORY_KEY], subject);
      const problems = advisoryOptionProblems(decl.options);
      if (problems.length) fail(problems.join('; '));
      const o = decl.options as Record<string, unknown>;
      if (o.scope === 'session') {
        fail(`scope 'session' is not possible on an entity class: the lock is held until the write's transaction ends (scope 'transaction')`);
      }
      if (o.onTimeout === 'skip') fail(`onTimeout 'skip' is not possible on an entity class: a write cannot be skipped; use 'throw'`);
      if (o.dataSource !== undefined) fail(`the dataSource option is not used on an entity class (the entity's own DataSource is)`);
      checkAdvisoryOptionsFor(dialect, o, subject);
    }
  },
  subscribers(inst) {
    return [new AdvisoryEntitySubscriber(inst)];
  },
};
