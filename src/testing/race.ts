/**
 * A barrier: `wait()` resolves for everyone once `parties` callers are waiting.
 *
 * `wait(work)` arrives once `work` has settled and resolves with its value (or rejects with its
 * error) when everyone has arrived: "every caller has read before anyone writes", the schedule
 * that makes a control's lost update or collision certain rather than likely.
 *
 * ```ts
 * const allRead = new Barrier(20);
 * await race(20, async () => {
 *   const found = await allRead.wait(accounts.findOneBy({ email }));
 *   if (!found) await accounts.save(accounts.create({ email })); // all 20 found nothing: 19 collide
 * });
 * ```
 */
export class Barrier {
  private waiting = 0;
  private release!: () => void;
  private readonly opened: Promise<void>;
  constructor(readonly parties: number) {
    if (!Number.isInteger(parties) || parties < 1) throw new RangeError(`Barrier: parties must be a positive integer (got ${parties})`);
    this.opened = new Promise((resolve) => (this.release = resolve));
  }
  wait(): Promise<void>;
  wait<T>(work: PromiseLike<T>): Promise<T>;
  wait<T>(work?: PromiseLike<T>): Promise<T | void> {
    if (work === undefined) return this.arrive();
    return Promise.resolve(work).then(
      (value) => this.arrive().then(() => value),
      (error: unknown) =>
        this.arrive().then(() => {
          throw error;
        }),
    );
  }
  private arrive(): Promise<void> {
    this.waiting += 1;
    if (this.waiting >= this.parties) this.release();
    return this.opened;
  }
}

/**
 * Starts `n` calls of `fn(i)` that all wait on one barrier before they begin their work, so
 * they really overlap, and returns every call's settled result (never rejects).
 *
 * ```ts
 * const results = await race(20, () => billing.charge(userId, orderId));
 * expect(results.filter((r) => r.status === 'rejected')).to.have.length(0);
 * ```
 */
export async function race<T>(n: number, fn: (index: number) => Promise<T> | T): Promise<PromiseSettledResult<T>[]> {
  const barrier = new Barrier(n);
  return Promise.allSettled(
    Array.from({ length: n }, async (_, i) => {
      await barrier.wait();
      return fn(i);
    }),
  );
}

/** The fulfilled values of `race`'s results; throws the first rejection. */
export function values<T>(results: PromiseSettledResult<T>[]): T[] {
  return results.map((r) => {
    if (r.status === 'rejected') throw r.reason;
    return r.value;
  });
}
