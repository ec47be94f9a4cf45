import { afterCompletion, type CommitHookOptions } from '../context/commit-hooks';
import type { Lease } from './lease';

/**
 * Keeps `lease` until the ambient transaction has ended, then releases it: after the COMMIT, so
 * no other holder of the key can read the rows before they are committed (and after a rollback
 * too — there is nothing left to protect). The lease must live until then: acquire it with a TTL
 * that covers the rest of the transaction, or extend it. Outside a transaction:
 * TransactionRequiredError.
 *
 * ```ts
 * await transaction(async () => {
 *   const lease = await redlock.acquire(`invoice:${id}`, 30_000);
 *   releaseAfterCommit(lease);
 *   await invoices.update(id, { sent: true });
 * }); // COMMIT, then the lease is released
 * ```
 */
export function releaseAfterCommit(lease: Lease, options?: CommitHookOptions): void {
  afterCompletion(async function releaseLease() {
    await lease.release();
  }, options);
}
