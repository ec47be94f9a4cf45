/**
 * The faults of arguments and options, shared by every area: a value of the wrong kind, an
 * unknown option, an optional package not installed. One factory per fault, one wording; the
 * caller throws what it returns. (The shape checks themselves are in src/arguments.ts.)
 */
import { describeValue, isThenable } from '../describe-value';
import { LockConfigError, type LockErrorDetails } from '../errors';

/** `${caller}: ${option} must be ${expected} (got …)`. */
export function badOption(caller: string, option: string, expected: string, value: unknown, details?: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${caller}: ${option} must be ${expected} (got ${describeValue(value)})`, details);
}

/** `${caller}: ${name} must be a function (got …)`, with a hint when a Promise was given. */
export function notAFunction(caller: string, name: string, value: unknown, details?: LockErrorDetails): LockConfigError {
  const hint = isThenable(value) ? '; pass the function itself, not the Promise its call returned' : '';
  return new LockConfigError(`${caller}: ${name} must be a function (got ${describeValue(value)})${hint}`, details);
}

/** Problems found by a shape check (src/arguments.ts `optionsProblems`, observerOptionProblems), in one message. */
export function badOptions(caller: string, problems: readonly string[], details?: LockErrorDetails): LockConfigError {
  return new LockConfigError(`${caller}: ${problems.join('; ')}`, details);
}

/** Keys that are no option of `caller`. */
export function unknownOptions(caller: string, unknown: readonly string[], known: readonly string[]): LockConfigError {
  return new LockConfigError(
    `${caller}: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')} (known: ${known.join(', ')})`,
  );
}

/** A required option was not given; `what` says what it is for. */
export function requiredOption(caller: string, option: string, what: string): LockConfigError {
  return new LockConfigError(`${caller}: ${option} is required (${what})`);
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
