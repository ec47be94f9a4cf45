/** Counts the bodies running at once: `run(ms)` is a body that sleeps `ms`; `max` the most seen together. */
export function concurrencyMeter(): { run: (ms: number) => Promise<void>; readonly max: number; readonly now: number } {
  let inside = 0;
  let max = 0;
  return {
    async run(ms: number) {
      inside++;
      max = Math.max(max, inside);
      await new Promise((resolve) => setTimeout(resolve, ms));
      inside--;
    },
    get max() {
      return max;
    },
    get now() {
      return inside;
    },
  };
}
