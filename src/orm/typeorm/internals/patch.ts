import { LockConfigError } from '../../../errors';
import { typeormVersion } from '../compat';

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

/** Problems unless `owner[method]` is a function whose source mentions each of `mentions` (the fields it relies on). */
export function expectMethod(owner: object, label: string, method: string, mentions: readonly string[] = []): string[] {
  const fn = (owner as Record<string, unknown>)[method];
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

/** The error of a failed probe: names each internal and the TypeORM version. */
export function probeError(problems: Array<{ patch: string; problem: string }>): LockConfigError {
  const list = problems.map((p) => `${p.patch}: ${p.problem}`).join('; ');
  return new LockConfigError(
    `installLocking: TypeORM ${typeormVersion()} differs from what ormlock patches (${list}). Nothing was installed: ` +
      'running unguarded could skip a declared lock without a word. Use a supported TypeORM (0.3.20 – 1.x) or report this version.',
    { internals: problems.map((p) => p.patch), typeormVersion: typeormVersion() },
  );
}
