/**
 * Reads `probe()` until `done(value)` holds or `timeoutMs` has passed, `everyMs` apart, and
 * returns the last value read: for state that other nodes or processes reach a little after the
 * call under test returned (a Redis node's late grant or release, an undone grant).
 */
export async function settled<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 2000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise<void>((resolve) => setTimeout(resolve, everyMs));
  }
}
