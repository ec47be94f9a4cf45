import type { LockConfigError } from '../../../errors';
import { unsupportedInternals } from '../../../faults/internals';
import type { Patch, PatchProblems } from '../../patching';

export { expectMethod, replaceMethod } from '../../patching';

/**
 * One patch of MikroORM internals: what it replaces, a probe that checks the shape it relies on,
 * and how to apply it (returning its undo). The owners are found on the live MikroORM instance (its
 * driver, connection, UnitOfWork …), so the copy of MikroORM the application uses is the one patched.
 */
export type MikroPatch = Patch;

/**
 * The object on `obj`'s prototype chain that defines `method` as the patch expects it: the most
 * derived one whose source mentions each of `mentions` (MySqlDriver's nativeUpdateMany calls
 * AbstractSqlDriver's, which builds the statement and is the one patched, shared by every driver);
 * without a match, the most derived one (so the probe reports it).
 */
export function ownerOf(obj: unknown, method: string, mentions: readonly string[] = []): Record<string, any> | undefined {
  let first: Record<string, any> | undefined;
  for (let p = obj as object | null; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    if (!Object.prototype.hasOwnProperty.call(p, method) || typeof (p as Record<string, unknown>)[method] !== 'function') continue;
    first ??= p as Record<string, any>;
    const source = Function.prototype.toString.call((p as Record<string, unknown>)[method]);
    if (mentions.every((m) => source.includes(m))) return p as Record<string, any>;
  }
  return first;
}

/** The error of a failed probe: names each internal and the MikroORM version. */
export function probeError(problems: PatchProblems, version: string): LockConfigError {
  return unsupportedInternals('MikroORM', version, '6.6', problems, { mikroOrmVersion: version });
}
