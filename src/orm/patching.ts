import { LockConfigError } from '../errors';

/**
 * What every adapter's patches of its ORM's internals share: the shape check of a method, its
 * replacement with an undo, and the error of a failed probe (naming each internal and the ORM version).
 */

/** Problems unless `owner[method]` is a function whose source mentions each of `mentions` (the fields it relies on). */
export function expectMethod(owner: object | undefined, label: string, method: string, mentions: readonly string[] = []): string[] {
  const fn = owner && (owner as Record<string, unknown>)[method];
  if (typeof fn !== 'function') return [`${label}.${method} is not a function`];
  const source = Function.prototype.toString.call(fn);
  const missing = mentions.filter((m) => !source.includes(m));
  return missing.length ? [`${label}.${method} no longer uses ${missing.join(', ')}`] : [];
}

/** Replaces `owner[method]` with `wrap(original)`; returns the undo. */
export function replaceMethod<F extends (...args: any[]) => any>(owner: object, method: string, wrap: (base: F) => F): () => void {
  const target = owner as Record<string, unknown>;
  const had = Object.prototype.hasOwnProperty.call(target, method);
  const base = target[method] as F;
  target[method] = wrap(base);
  return () => {
    if (had) target[method] = base;
    else delete target[method];
  };
}

/** The error of a failed probe: nothing was installed, and why. */
export function unsupportedInternalsError(
  orm: string,
  version: string,
  supported: string,
  problems: Array<{ patch: string; problem: string }>,
  details: Record<string, unknown>,
): LockConfigError {
  const list = problems.map((p) => `${p.patch}: ${p.problem}`).join('; ');
  return new LockConfigError(
    `installLocking: ${orm} ${version} differs from what ormlock patches (${list}). Nothing was installed: ` +
      `running unguarded could skip a declared lock without a word. Use a supported ${orm} (${supported}) or report this version.`,
    { internals: problems.map((p) => p.patch), ...details },
  );
}
