/**
 * Holding a lease (or a semaphore permit) while a function runs: the part of `using()` after
 * the acquisition, shared by Redlock.using and the Redis semaphore's using. Extends the lease
 * when `thresholdMs` of validity are left, runs `fn` as a lock scope (currentLockSignal() is the
 * lease's signal), always releases, and rejects with LockLostError when the lease was lost
 * during `fn`, ran out of validity (monotonic clock) or was not found on a quorum at release.
 * With `releaseAfterCommit`, a `fn` that succeeded inside an ambient transaction leaves the
 * lease held: it is confirmed on a quorum by an extension (a full TTL ahead) and released once
 * that transaction has ended (a commit hook).
 */
import { runWithLockSignal } from '../context/lock-signal';
import { currentFrame, liveTxs } from '../context/store';
import { leaseLost, withCause } from '../faults/redis';
import { describeKeys, keyDetail, type Lease } from './lease';
import { releaseAfterCommit as releaseAtTransactionEnd } from './release-after-commit';

export async function holdLeaseWhile<L extends Lease, T>(
  lease: L,
  ttlMs: number,
  thresholdMs: number,
  fn: (lease: L) => Promise<T> | T,
  what = 'Redis lease on',
  releaseAfterCommit = false,
): Promise<T> {
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  let extending: Promise<void> | undefined;
  const schedule = (): void => {
    if (done || lease.state !== 'held') return;
    timer = setTimeout(
      () => {
        timer = undefined;
        // A failure marks the lease lost and aborts its signal (inside the driver's extend).
        extending = lease.extend(ttlMs).then(schedule, () => undefined);
      },
      Math.max(0, lease._validForMs - thresholdMs),
    );
  };
  schedule();

  let result: T | undefined;
  let failed = false;
  let failure: unknown;
  try {
    result = await runWithLockSignal(lease.signal, () => fn(lease));
  } catch (error) {
    failed = true;
    failure = error;
  }
  done = true;
  if (timer) clearTimeout(timer);
  if (extending) await extending;

  const finishedAt = Date.now();
  const heldToTheEnd = lease.state === 'held' && lease._validForMs > 0;
  const lostBefore = lease._lost;
  const keep = releaseAfterCommit && !failed && heldToTheEnd && !lostBefore && liveTxs(currentFrame()).length > 0;
  const stillHeld = keep ? await keepUntilTransactionEnd(lease, ttlMs) : await lease.release();
  if (lostBefore || !heldToTheEnd || !stillHeld) {
    // Lost during fn, or fn outlived the lease's validity (measured on the monotonic clock),
    // or the release did not find the lease on a quorum: someone else may have held it meanwhile.
    const lost =
      lostBefore ??
      leaseLost(
        describeKeys(lease.keys),
        !heldToTheEnd
          ? `expired while the function ran (${finishedAt - lease.acquiredAt} ms; the event loop may have been blocked past the automatic extension)`
          : 'was not found on a quorum of nodes at release: it expired or was taken while the function ran',
        { key: keyDetail(lease.keys), fencingToken: lease.fencingToken, expiresAt: lease.expiresAt },
        what,
      );
    if (failed && failure !== lost) {
      throw withCause(lost, failure);
    }
    throw lost;
  }
  if (failed) throw failure;
  return result as T;
}

/** Confirms `lease` on a quorum (an extension: a full TTL for the rest of the transaction) and has the ambient transaction's end release it; false (and released) when it is no longer held. */
async function keepUntilTransactionEnd(lease: Lease, ttlMs: number): Promise<boolean> {
  try {
    await lease.extend(ttlMs);
  } catch {
    await lease.release().catch(() => false);
    return false;
  }
  releaseAtTransactionEnd(lease);
  return true;
}
