/**
 * What every adapter's patches of its ORM's internals share: the shape check of a method, its
 * replacement with an undo. (The error of a failed probe: src/faults/internals.ts.)
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
