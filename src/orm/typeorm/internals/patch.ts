import type { LockConfigError } from '../../../errors';
import { unsupportedInternals } from '../../../faults/internals';
import { typeormVersion } from '../compat';

export { expectMethod, replaceMethod } from '../../patching';

/**
 * One patch of TypeORM internals: what it replaces, a probe that checks the shape it relies on,
 * and how to apply and undo it. Every patch of the adapter is one of these (see index.ts).
 */
export interface InternalPatch {
  /** What it patches, as people name it: `SelectQueryBuilder.prototype.createLockExpression`, … */
  readonly name: string;
  /** The problems with the shape of what it patches (empty when it is as expected). */
  probe(): string[];
  apply(): void;
  restore(): void;
}

/** The error of a failed probe: names each internal and the TypeORM version. */
export function probeError(problems: Array<{ patch: string; problem: string }>): LockConfigError {
  return unsupportedInternals('TypeORM', typeormVersion(), '0.3.20 – 1.x', problems, { typeormVersion: typeormVersion() });
}
