import { badOptions } from '../../faults/options';
import { resolveRowLockSpec } from '../../locks/row-lock-options';
import type { TypeOrmFeature } from './feature';

/** Checks each `@Pessimistic(...)` entity policy against the database's capabilities. */
export const pessimisticFeature: TypeOrmFeature = {
  name: 'pessimistic',
  validate(entity, declared, { dialect }) {
    if (!declared.pessimistic) return;
    const subject = `@Pessimistic on ${entity.name}`;
    const { spec, problems } = resolveRowLockSpec(declared.pessimistic);
    if (problems.length) throw badOptions(subject, problems, { entity: entity.name });
    dialect.checkRowLock(spec, subject);
  },
};
