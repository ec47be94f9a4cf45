import { optionsProblems } from '../src/arguments';
import { lazyDataSourceMissing, notAMethod, notAsync, standardDecoratorCall } from '../src/faults/decorators';
import { badOptions } from '../src/faults/options';

/** A decorator usable on an entity class and on a method. */
export interface ClassOrMethodDecorator {
  (target: Function): void;
  <T>(target: object, propertyKey: string | symbol, descriptor: TypedPropertyDescriptor<T>): TypedPropertyDescriptor<T> | void;
}

type AnyMethod = (this: unknown, ...args: any[]) => any;

/** The context object a standard (TC39) decorator gets as its second argument. */
interface StandardDecoratorContext {
  kind: string;
  name?: string | symbol;
}

function isStandardContext(x: unknown): x is StandardDecoratorContext {
  return x !== null && typeof x === 'object' && typeof (x as { kind?: unknown }).kind === 'string';
}

/**
 * Throws LockConfigError when a decorator is called the standard (TC39) way — `(value, context)`,
 * as tsx, esbuild, Vite, Babel and TypeScript 5 without `experimentalDecorators` emit it —
 * instead of TypeScript's legacy `(target, propertyKey, descriptor)`. Every decorator calls it first.
 */
export function rejectStandardDecorator(decorator: string, value: unknown, context: unknown): void {
  if (!isStandardContext(context)) return;
  const owner = context.kind === 'class' ? ((value as { name?: string })?.name ?? String(context.name)) : String(context.name ?? 'anonymous');
  throw standardDecoratorCall(decorator, owner, context.kind);
}

/** Throws LockConfigError `@X(…): options must be an object (got …)` when a decorator's options are not an object. */
export function checkDecoratorOptions(decorator: string, options: unknown, signature = 'options?'): void {
  const problems = optionsProblems(options);
  if (problems.length) throw badOptions(`@${decorator}(${signature})`, problems);
}

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
  rejectStandardDecorator(decorator, target, propertyKey);
  const className = typeof target === 'function' ? target.name : (target.constructor?.name ?? 'anonymous');
  const methodName = `${className}.${String(propertyKey)}`;
  const original = descriptor?.value;
  if (typeof original !== 'function') {
    throw notAMethod(decorator, methodName);
  }
  if (!isAsyncMethod(original, target, propertyKey)) {
    throw notAsync(decorator, methodName);
  }
  const wrapped = wrap(original, methodName);
  asyncWrappers.add(wrapped);
  Object.defineProperty(wrapped, 'name', { value: original.name, configurable: true });
  descriptor.value = wrapped;
  return descriptor;
}

/**
 * The methods `wrapAsyncMethod` made: async in effect (each returns a promise and never throws),
 * though some are plain functions (one async layer less per call), so a decorator stacked on
 * them accepts them.
 */
const asyncWrappers = new WeakSet<Function>();

/**
 * The one "is it async" check: a method an ormlock decorator wrapped, a native async function, an async method down-levelled by
 * TypeScript or Babel (`__awaiter`, `_asyncToGenerator`), or a method whose emitted return type
 * is `Promise` (a plain function returning one, with `emitDecoratorMetadata`).
 */
export function isAsyncMethod(fn: Function, target: object, propertyKey: string | symbol): boolean {
  if (asyncWrappers.has(fn)) return true;
  if ((fn as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === 'AsyncFunction') return true;
  if (Reflect.getMetadata?.('design:returntype', target, propertyKey) === Promise) return true;
  return /\b__awaiter\b|\b_asyncToGenerator\b/.test(Function.prototype.toString.call(fn));
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
    throw lazyDataSourceMissing(decorator, methodName, resolved);
  }
  return { ...options, dataSource: resolved };
}
