export { Redlock } from './redlock';
export type { RedlockOptions, AcquireOptions, UsingOptions, NodeResult, LockKey, LockKeys, RedlockClient } from './redlock';
export { Lease } from './lease';
export type { LeaseState } from './lease';
export { withDistributedLock } from './with-distributed-lock';
export type { DistributedLockCallOptions } from './with-distributed-lock';
export { DistributedLock } from '../../decorators/DistributedLock';
export type { DistributedLockOptions, DistributedLockKey } from '../../decorators/DistributedLock';
