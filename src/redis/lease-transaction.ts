/**
 * `redlock.using(key, ttlMs, fn, { transaction: true })`: fn runs in a database transaction (the
 * ambient one, or a new one) that is tied to the lease. The lease is confirmed on a quorum (an
 * extension, one Redis round trip) at the end of the body, inside the transaction, just before
 * `transaction()` commits; a lease lost before that — found by the automatic extension or by
 * this check — makes the body throw LockLostError, so the transaction rolls back.
 */
import { inTransaction, transaction, type TransactionOptions } from '../context/transaction';
import { LockConfigError, LockLostError } from '../errors';
import { badOption } from '../faults/options';
import { dataSourceWithoutTransaction, leaseNotConfirmed, leaseTransactionTarget } from '../faults/redis';
import { describeKeys, type Lease } from './lease';

export interface LeaseTransactionOptions {
  /**
   * Run `fn` inside a database transaction tied to the lease (the ambient one, or a new one):
   * a lease lost before COMMIT rolls it back and `using` throws LockLostError.
   */
  transaction?: boolean;
  /** Which installation the transaction is on (default: the Redlock's fencing dataSource, else the one `transaction()` resolves). */
  dataSource?: TransactionOptions['dataSource'];
}

/** The checked transaction target, or undefined when the option is off. Throws LockConfigError before anything is sent. */
export function checkLeaseTransaction(
  options: LeaseTransactionOptions,
  fencingDataSource: object | undefined,
): { dataSource: TransactionOptions['dataSource'] } | undefined {
  const { transaction: wanted, dataSource } = options;
  if (wanted !== undefined && typeof wanted !== 'boolean') {
    throw badOption('Redlock.using', 'the transaction option', 'true or false', wanted);
  }
  if (!wanted) {
    if (dataSource !== undefined) {
      throw dataSourceWithoutTransaction();
    }
    return undefined;
  }
  const target = (dataSource ?? fencingDataSource) as TransactionOptions['dataSource'];
  if (dataSource !== undefined && (dataSource === null || typeof dataSource !== 'object')) {
    throw badOption('Redlock.using', 'dataSource', 'an installed DataSource (or MikroORM instance)', dataSource);
  }
  try {
    inTransaction(target); // resolves the installation: LockConfigError when there is none
  } catch (error) {
    if (error instanceof LockConfigError) {
      throw leaseTransactionTarget(error);
    }
    throw error;
  }
  return { dataSource: target };
}

export function runInLeaseTransaction<T>(
  tx: { dataSource: TransactionOptions['dataSource'] },
  lease: Lease,
  ttlMs: number,
  fn: (lease: Lease) => Promise<T> | T,
): Promise<T> {
  return transaction(
    async () => {
      const result = await fn(lease);
      await confirmLease(lease, ttlMs);
      return result;
    },
    { dataSource: tx.dataSource },
  );
}

/** Just before COMMIT: the lease must still be ours on a quorum (and gets a full TTL ahead for the COMMIT). */
async function confirmLease(lease: Lease, ttlMs: number): Promise<void> {
  const lost = lease._lost;
  if (lost) throw lost;
  try {
    await lease.extend(ttlMs);
  } catch (error) {
    if (error instanceof LockLostError) throw error;
    throw leaseNotConfirmed(describeKeys(lease.keys), error, {
      key: lease.keys.length === 1 ? lease.keys[0] : [...lease.keys],
      fencingToken: lease.fencingToken,
      cause: error,
    });
  }
}
