import { LockConfigError } from '../src/errors';

/** A decorator usable on an entity class and on a method. */
export interface ClassOrMethodDecorator {
  (target: Function): void;
  <T>(target: object, propertyKey: string | symbol, descriptor: TypedPropertyDescriptor<T>): TypedPropertyDescriptor<T> | void;
}

type AnyMethod = (this: unknown, ...args: any[]) => any;

/**
 * The one helper every method decorator uses: checks that the method is async (a lock or
 * transaction cannot end before a synchronous method's work does), and replaces it with
 * `wrap(original, name)` keeping its name. Decorators record and delegate; the behaviour
 * lives in the plain-function twin that `wrap` calls.
 */
export function wrapAsyncMethod(
  decorator: string,
  target: object,
  propertyKey: string | symbol,
  descriptor: PropertyDescriptor,
  wrap: (original: AnyMethod, methodName: string) => AnyMethod,
): PropertyDescriptor {
  const className = typeof target === 'function' ? target.name : target.constructor?.name ?? 'anonymous';
  const methodName = `${className}.${String(propertyKey)}`;
  const original = descriptor?.value;
  if (typeof original !== 'function') {
    throw new LockConfigError(`@${decorator} on ${methodName}: only methods can be decorated (not accessors or fields).`, { method: methodName });
  }
  const returnType = Reflect.getMetadata?.('design:returntype', target, propertyKey);
  const isAsync = original.constructor?.name === 'AsyncFunction' || returnType === Promise;
  if (!isAsync) {
    throw new LockConfigError(
      `@${decorator} on ${methodName}: the method must be async (return a Promise), or the lock would end before its work does.`,
      { method: methodName },
    );
  }
  const wrapped = wrap(original, methodName);
  Object.defineProperty(wrapped, 'name', { value: original.name, configurable: true });
  descriptor.value = wrapped;
  return descriptor;
}

/**
 * A method decorator's `dataSource` option may be a function of the instance, called at each call
 * (also as `this`): `{ dataSource: (self: Reports) => self.analytics }` names a DataSource (or
 * MikroORM instance) injected in the constructor, as NestJS does, when several are installed.
 * A function that returns nothing is a LockConfigError naming the method, never a silent fallback.
 */
export function withDataSourceOf<T>(options: T, self: unknown, methodName: string, decorator: string): T {
  const ds = (options as { dataSource?: unknown } | undefined)?.dataSource;
  if (typeof ds !== 'function') return options;
  const resolved = (ds as (self: unknown) => unknown).call(self, self);
  if (resolved === undefined || resolved === null) {
    throw new LockConfigError(`@${decorator} on ${methodName}: options.dataSource(self) returned ${String(resolved)}; it must return the DataSource (or MikroORM instance) to use.`, { method: methodName });
  }
  return { ...options, dataSource: resolved };
}
