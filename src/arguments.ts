import { describeValue, isThenable } from './describe-value';
import type { LockErrorDetails } from './errors';
import { badOptions, notAFunction } from './faults/options';

export { describeValue };

/**
 * The shape checks of public arguments, shared by every function and decorator: an options
 * object, a callback. The messages name the argument and what was given, so the caller can fix
 * the call; they are thrown before anything is sent to a database.
 */

/**
 * True for an object that can carry options or values: a plain object (also from another realm,
 * or made with `Object.create(null)`) or an instance of the caller's own class — not an array, a
 * Promise, a function or a built-in collection (Map, Set, Date, RegExp, Error, a Buffer).
 */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || isThenable(value)) return false;
  const builtIns = [Map, Set, WeakMap, WeakSet, Date, RegExp, Error, ArrayBuffer] as Function[];
  return !builtIns.some((type) => value instanceof type) && !ArrayBuffer.isView(value);
}

/**
 * Problems with an options argument (empty when fine): undefined is fine; anything but a plain
 * object is refused; with `known`, every key must be one of them (a typo is not silently ignored).
 */
export function optionsProblems(options: unknown, known?: readonly string[], name = 'options'): string[] {
  if (options === undefined) return [];
  if (!isPlainObject(options)) return [`${name} must be an object (got ${describeValue(options)})`];
  if (!known) return [];
  return Object.keys(options)
    .filter((key) => !known.includes(key))
    .map((key) => `unknown option '${key}' (the options are: ${known.join(', ')})`);
}

/** Throws LockConfigError `${caller}: …` when the options argument has problems. */
export function checkOptions(caller: string, options: unknown, known?: readonly string[], details?: LockErrorDetails): void {
  const problems = optionsProblems(options, known);
  if (problems.length) throw badOptions(caller, problems, details);
}

/** Throws LockConfigError unless `value` is a function: `${caller}: ${name} must be a function (got …)`. */
export function checkFunction(caller: string, value: unknown, name: string, details?: LockErrorDetails): void {
  if (typeof value !== 'function') {
    throw notAFunction(caller, name, value, details);
  }
}

const hasIsWellFormed = typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function';

/** No lone surrogate (which UTF-8 would turn into U+FFFD, so two different texts would be one): `String.prototype.isWellFormed` where Node has it. */
export function isWellFormed(s: string): boolean {
  return hasIsWellFormed ? (s as unknown as { isWellFormed(): boolean }).isWellFormed() : Buffer.from(s, 'utf8').toString('utf8') === s;
}
