import { checkFunction, isPlainObject } from '../arguments';
import { childFrame, currentFrame, runInFrame } from './store';
import { currentOutsideRun } from '../faults/context';
import { badOption } from '../faults/options';

/**
 * Request-scoped values (Ruby's `Thread.current`): `Current.run({ ip }, handler)` gives the
 * handler and everything it awaits its own values, never visible to concurrent requests.
 */
export const Current = {
  /** Runs `fn` with `values` layered over the enclosing ones (the enclosing scope is not changed). */
  run<T>(values: Record<PropertyKey, unknown>, fn: () => T): T {
    if (!isPlainObject(values)) {
      throw badOption('Current.run(values, fn)', 'values', 'an object of values, e.g. { userId }', values);
    }
    checkFunction('Current.run(values, fn)', fn, 'fn');
    const merged = new Map(currentFrame()?.values ?? []);
    for (const key of Reflect.ownKeys(values)) merged.set(key, (values as Record<PropertyKey, unknown>)[key]);
    return runInFrame(childFrame({ values: merged }), fn);
  },
  /** The value of `key` in this async context, or undefined. */
  get<T = unknown>(key: PropertyKey): T | undefined {
    checkKey('Current.get(key)', key);
    return currentFrame()?.values.get(key) as T | undefined;
  },
  /** Sets `key` for the rest of the enclosing `Current.run` (or transaction) scope. */
  set(key: PropertyKey, value: unknown): void {
    checkKey('Current.set(key, value)', key);
    const frame = currentFrame();
    if (!frame) {
      throw currentOutsideRun(key);
    }
    frame.values.set(key, value);
  },
  /** True inside a Current.run / transaction scope. */
  active(): boolean {
    return currentFrame() !== undefined;
  },
};

function checkKey(caller: string, key: unknown): void {
  if (typeof key !== 'string' && typeof key !== 'symbol' && typeof key !== 'number') {
    throw badOption(caller, 'key', 'a string, symbol or number', key);
  }
}

export interface TypedCurrent<T extends object> {
  run<R>(values: Partial<T>, fn: () => R): R;
  get<K extends keyof T>(key: K): T[K] | undefined;
  set<K extends keyof T>(key: K, value: T[K]): void;
}

/**
 * A typed view of `Current`: `const RequestCtx = defineCurrent<{ userId: number; ip: string }>()`,
 * then `RequestCtx.get('userId')` is a `number | undefined`.
 */
export function defineCurrent<T extends object>(): TypedCurrent<T> {
  return {
    run: (values, fn) => Current.run(values as Record<PropertyKey, unknown>, fn),
    get: (key) => Current.get(key as PropertyKey),
    set: (key, value) => Current.set(key as PropertyKey, value),
  };
}
