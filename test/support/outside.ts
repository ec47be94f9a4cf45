import { runInFrame } from '../../src/context/store';

/** Runs `fn` outside any ambient transaction or held lock (like another request). */
export function outside<T>(fn: () => Promise<T>): Promise<T> {
  return runInFrame({ txs: new Map(), values: new Map() }, fn);
}

/** A promise and the function that resolves it. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
