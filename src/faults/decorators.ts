/**
 * The faults of the decorators themselves (decorators/): a decorator called the standard (TC39)
 * way, on something that is not an async method, without a key, or with a `dataSource` / `redlock`
 * function that returns nothing usable. One factory per fault, one wording for every decorator;
 * the caller throws what it returns. Shared faults (a wrong option value, bad options) are in ./options.
 */
import { LockConfigError, type LockErrorDetails } from '../errors';

/** `@decorator` was called the standard (TC39) way — `(value, context)` — on `owner`, a `kind`. */
export function standardDecoratorCall(decorator: string, owner: string, kind: string): LockConfigError {
  return new LockConfigError(
    `@${decorator} on ${owner} (a ${kind}): this is a standard (TC39) decorator call — its second argument is a context object — ` +
      'but ormlock\'s decorators are TypeScript\'s legacy decorators. Set "experimentalDecorators": true (and "emitDecoratorMetadata": true) ' +
      'in tsconfig.json; tsx, esbuild, Vite and Babel emit standard decorators without it. Or use the plain-function twin.',
    { method: owner },
  );
}

/** A method decorator on an accessor or a field. */
export function notAMethod(decorator: string, method: string): LockConfigError {
  return new LockConfigError(`@${decorator} on ${method}: only methods can be decorated (not accessors or fields).`, { method });
}

/** A method decorator on a method that is not async. */
export function notAsync(decorator: string, method: string): LockConfigError {
  return new LockConfigError(`@${decorator} on ${method}: the method must be async (return a Promise), or the lock would end before its work does.`, {
    method,
  });
}

/** A keyed decorator given no key (`undefined`, `null`, an empty string). */
export function missingKey(caller: string, key: unknown, details?: LockErrorDetails): LockConfigError {
  const what = typeof key === 'string' ? 'an empty string' : String(key);
  return new LockConfigError(`${caller}: the key is ${what}; give a key, or a function of the method's arguments returning one`, details);
}

/** A method decorator's `options.dataSource(self)` returned nothing. */
export function lazyDataSourceMissing(decorator: string, method: string, resolved: unknown): LockConfigError {
  return new LockConfigError(
    `@${decorator} on ${method}: options.dataSource(self) returned ${String(resolved)}; it must return the DataSource (or MikroORM instance) to use.`,
    { method },
  );
}

/** `@DistributedLock`'s `options.redlock()` returned something that is not a Redlock. */
export function notARedlock(method: string, instance: unknown): LockConfigError {
  const got = instance === null ? 'null' : instance === undefined ? 'undefined' : typeof instance;
  return new LockConfigError(`@DistributedLock on ${method}: options.redlock() did not return a Redlock (got ${got})`, { method });
}
