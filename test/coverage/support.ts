import { expect } from 'chai';
import { Repository } from 'typeorm';
import { race } from '../../src/testing';

/** Which TypeORM runs this process (ORMLOCK_TYPEORM picks the line). */
export const TYPEORM_LINE: '0.3' | '1.x' = typeof (Repository.prototype as any).findOneById === 'function' ? '0.3' : '1.x';

/** True when the running TypeORM's Repository has `method` (entry points differ between 0.3 and 1.x). */
export function repositoryHas(method: string): boolean {
  return typeof (Repository.prototype as any)[method] === 'function';
}

/** The rejection of `p` (fails the test when it resolves). */
export async function rejection(p: Promise<unknown> | (() => unknown)): Promise<any> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (error) {
    return error;
  }
  expect.fail('expected a rejection');
}

/**
 * `n` read-modify-write workers started on one barrier: each runs `step` (read, sleep inside the
 * window, write +1) inside `wrap`. Returns the rejections (expected none).
 */
export async function raceIncrements(n: number, wrap: (body: () => Promise<void>) => Promise<void>, step: () => Promise<void>): Promise<unknown[]> {
  const results = await race(n, () => wrap(step));
  return results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
