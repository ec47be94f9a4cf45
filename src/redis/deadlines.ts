/**
 * Deadlines of the Redis rounds: one timer for all of them instead of a setTimeout and a
 * clearTimeout per round. A round that settles in time (nearly every one) costs a push and a
 * flag; the timer fires at the earliest deadline still pending, expires what is due, drops what
 * settled and re-arms itself. The timer keeps the process alive only while a deadline is live,
 * like the per-round timers did. Times are `performance.now()` (monotonic, as timers are): a
 * wall-clock jump moves no deadline.
 */
import { performance } from 'perf_hooks';

/** A pending deadline: `cancel()` once the round settled, so `onExpire` never runs. */
export interface Deadline {
  cancel(): void;
}

/** What expires: a function, or an object whose `expire()` runs (a round: no closure made per round). */
export interface Expiring {
  expire(): void;
}

type OnExpire = (() => void) | Expiring;

class Entry implements Deadline {
  done = false;
  constructor(
    readonly at: number,
    public onExpire: OnExpire | null,
    private readonly owner: Deadlines,
  ) {}

  cancel(): void {
    if (this.done) return;
    this.done = true;
    this.onExpire = null; // the round's state is not kept until the timer fires
    this.owner.settled();
  }
}

export class Deadlines {
  private entries: Entry[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires (`performance.now()` ms). */
  private timerAt = Infinity;
  /** Entries not yet done. */
  private live = 0;

  /**
   * Runs `onExpire` after `ms` (give or take the timer's 1 ms granularity) unless cancelled
   * first; counted from `now` when the caller has just read `performance.now()`.
   */
  add(ms: number, onExpire: OnExpire, now: number = performance.now()): Deadline {
    const at = now + ms;
    const entry = new Entry(at, onExpire, this);
    this.entries.push(entry);
    if (this.live++ === 0) this.timer?.ref();
    if (at < this.timerAt) this.arm(at);
    return entry;
  }

  /** @internal An entry was cancelled. */
  settled(): void {
    if (--this.live === 0) this.timer?.unref();
    // settled entries wait for the timer to be dropped; drop them sooner when they pile up
    if (this.entries.length > 64 && this.entries.length > 4 * this.live) this.entries = this.entries.filter((e) => !e.done);
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, Math.ceil(at - performance.now())));
    if (this.live === 0) this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    const due: Entry[] = [];
    const keep: Entry[] = [];
    let next = Infinity;
    for (const e of this.entries) {
      if (e.done) continue;
      if (e.at <= now) due.push(e);
      else {
        keep.push(e);
        if (e.at < next) next = e.at;
      }
    }
    this.entries = keep;
    if (next < Infinity) this.arm(next);
    for (const e of due) {
      const onExpire = e.onExpire;
      e.cancel();
      if (typeof onExpire === 'function') onExpire();
      else onExpire?.expire();
    }
  }
}
