import type { LockConfigError } from '../../../errors';
import { unsupportedInternals } from '../../../faults/internals';
import type { Patch, PatchProblems } from '../../patching';
import { typeormVersion } from '../compat';

export { expectMethod, replaceMethod } from '../../patching';

/**
 * One patch of TypeORM internals: what it replaces, a probe that checks the shape it relies on,
 * and how to apply it (returning its undo). Every patch of the adapter is one of these (see index.ts).
 */
export type InternalPatch = Patch;

/** The error of a failed probe: names each internal and the TypeORM version. */
export function probeError(problems: PatchProblems): LockConfigError {
  return unsupportedInternals('TypeORM', typeormVersion(), '0.3.20 – 1.x', problems, { typeormVersion: typeormVersion() });
}
