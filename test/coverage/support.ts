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

/**
 * Runs `write` while `hold` holds a lock (hold(body) runs body inside it) until the write is done or
 * `holdMs` passed; returns the order in which the holder released and the write finished. A write
 * that does not wait finishes first however slow the machine is, as long as it takes less than `holdMs`.
 */
export async function orderAgainstHolder(
  hold: (body: () => Promise<void>) => Promise<unknown>,
  write: () => Promise<unknown>,
  holdMs: number,
): Promise<string[]> {
  const order: string[] = [];
  let held!: () => void;
  const isHeld = new Promise<void>((r) => (held = r));
  let written!: () => void;
  const writeDone = new Promise<void>((r) => (written = r));
  const holder = hold(async () => {
    held();
    await Promise.race([writeDone, sleep(holdMs)]);
    order.push('holder released');
  });
  await isHeld;
  try {
    await write();
    order.push('write done');
  } finally {
    written();
    await holder;
  }
  return order;
}
