/**
 * The faults of arguments and options, shared by every area: a value of the wrong kind, an
 * unknown option, an optional package not installed. One factory per fault, one wording; the
 * caller throws what it returns. (The shape checks themselves are in src/arguments.ts.)
 */
import { describeValue } from '../arguments';
import { LockConfigError, type LockErrorDetails } from '../errors';

/** `${caller}: ${option} must be ${expected} (got …)`. */
export function badOption(caller: string, option: string, expected: string, value: unknown, details?: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${caller}: ${option} must be ${expected} (got ${describeValue(value)})`, details);
}

/** Problems found by a shape check (src/arguments.ts `optionsProblems`, observerOptionProblems), in one message. */
export function badOptions(caller: string, problems: readonly string[], details?: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${caller}: ${problems.join('; ')}`, details);
}

/** Keys that are no option of `caller`. */
export function unknownOptions(caller: string, unknown: readonly string[], known: readonly string[]): LockConfigError {
  return new LockConfigError(`${caller}: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')} (known: ${known.join(', ')})`);
}

/** An optional peer that `what` needs is not installed. */
export function missingPackage(what: string, pkg: string): LockConfigError {
  return new LockConfigError(`${what} needs the package '${pkg}': npm install ${pkg}`, { package: pkg });
}

/** The dialect lacks a capability the call needs (a capability flag or part is absent). */
export function dialectLacks(caller: string, dialect: string, what: string): LockConfigError {
  return new LockConfigError(`${caller}: the '${dialect}' dialect has no ${what}`, { dialect });
}

/** The DataSource is not initialized yet. */
export function notInitialized(caller: string, label: string): LockConfigError {
  return new LockConfigError(`${caller}: ${label} is not initialized: call \`await dataSource.initialize()\` first.`);
}
