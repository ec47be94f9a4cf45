/**
 * The faults of the ORM internals the adapters patch (src/orm/patch-lifecycle.ts and each
 * adapter's probes): an internal whose shape differs from what ormlock patches. One factory per
 * fault, one wording for every ORM; the caller throws what it returns. (`@LockedTree`'s own
 * probe words its fault in ./trees.)
 */
import { LockConfigError } from '../errors';

/** A failed probe: `problems` names each internal that differs; nothing was installed. */
export function unsupportedInternals(
  orm: string,
  version: string,
  supported: string,
  problems: ReadonlyArray<{ patch: string; problem: string }>,
  details: Record<string, unknown>,
): LockConfigError {
  const list = problems.map((p) => `${p.patch}: ${p.problem}`).join('; ');
  return new LockConfigError(
    `installLocking: ${orm} ${version} differs from what ormlock patches (${list}). Nothing was installed: ` +
      `running unguarded could skip a declared lock without a word. Use a supported ${orm} (${supported}) or report this version.`,
    { internals: problems.map((p) => p.patch), ...details },
  );
}
