/**
 * The clocks of leases and permits: validity, drift and extensions are measured on a monotonic
 * clock (`performance.now()`, or a test's injected one), so a step of the wall clock moves no
 * validity; the wall clock (`Date.now()`) is only for display (`expiresAt`) and events.
 */
import { performance } from 'perf_hooks';
import { badOption } from '../faults/options';

/** Monotonic milliseconds. */
export type Clock = () => number;

const monotonic: Clock = () => performance.now();

/**
 * A reading of `clock` as a `performance.now()` reading (what the rounds' deadlines count
 * from), when `clock` is the default one; undefined for an injected clock.
 */
export function performanceReading(clock: Clock, reading: number): number | undefined {
  return clock === monotonic ? reading : undefined;
}

/** The `clock` option checked, or the default monotonic clock. */
export function checkClock(clock: unknown): Clock {
  if (clock === undefined) return monotonic;
  if (typeof clock !== 'function') throw badOption('Redlock', 'clock', 'a function returning monotonic ms', clock);
  return clock as Clock;
}

/** The clock-drift allowance of a TTL: ttl·driftFactor + 2 ms (validity = ttl − elapsed − drift). */
export function driftOf(ttlMs: number, driftFactor: number): number {
  return Math.round(ttlMs * driftFactor) + 2;
}

/**
 * Whether what was granted at `start` (clock reading) with `validity` ms is still valid at `now`;
 * a reading below `start` means the clock is not monotonic, so the validity is unknown: no.
 */
export function stillValid(start: number, validity: number, now: number): boolean {
  return now >= start && now < start + validity;
}
