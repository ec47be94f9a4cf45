/**
 * ormlock: declarative concurrency control for TypeORM. The exported names are a contract
 * (see DESIGN.md); add freely, rename only with a written reason.
 */
// setup
export { installLocking, type InstallLockingOptions, type LockingHandle } from './orm/typeorm/install';
export type { LockEvent } from './settings';
// context
export { transaction, currentManager, inTransaction, type TransactionOptions, type Propagation } from './context/transaction';
export { Current, defineCurrent, type TypedCurrent } from './context/current';
export { Transactional } from '../decorators/Transactional';
// row locks
export { lock, withLock, withPessimistic, type PessimisticMethodOptions, type RowLockOptions, type RowLockMode, type OnLocked } from './locks/pessimistic';
export type { LockCallOptions } from './orm/typeorm/row-lock';
export { Pessimistic } from '../decorators/Pessimistic';
// dialects (for advanced use and tests)
export type { LockDialect, DialectCapabilities } from './dialects/dialect';
// errors
export {
  LockError, LockTimeoutError, LockNotAvailableError, DeadlockError, SerializationError, StaleEntityError,
  TransactionRequiredError, LockConfigError, LockLostError, UniqueViolationError, type LockErrorDetails,
} from './errors';
// parent lock around create (nested sets)
export { AroundCreate } from '../decorators/AroundCreate';
export {
  lockParent, addAroundCreate, isParentLockHook,
  type ParentLockOptions, type ParentLockHook, type ParentLockDeclaration, type AroundCreateHook, type AroundCreateContext,
} from './locks/parent';
export { lockRowOn, type AroundCreateRunContext, type ParentRef } from './orm/typeorm/parent-lock';
// optimistic versions, retries and unique rows
export { Versioned } from '../decorators/Versioned';
export { RetryOnConflict } from '../decorators/RetryOnConflict';
export { versioned, type VersionedOptions } from './locks/optimistic';
export { retryOnConflict, isRetryableConflict, type RetryOptions, type RetryInfo, type RetryMatcher } from './locks/retry';
export { createOrFind } from './locks/create-or-find';
export { addVersionColumn, dropVersionColumn, type AddVersionColumnOptions } from './orm/typeorm/versioned-migration';
// advisory locks
export { AdvisoryLock, type AdvisoryLockKey } from '../decorators/AdvisoryLock';
export {
  withAdvisoryLock, withAdvisoryLocks, advisoryLockExists, advisoryLockId, advisoryKeys, AdvisoryKeySet,
  type AdvisoryLockOptions, type AdvisoryLockSkipOptions, type AdvisoryLockContext, type AdvisoryLockExistsOptions,
  type AdvisoryScope, type OnAdvisoryTimeout, type AdvisoryKey, type AdvisoryKeyPart, type AdvisoryKeyValue,
} from './locks/advisory';
// Redis leases
export { Redlock, Lease, withDistributedLock } from './redis';
export type {
  RedlockOptions, AcquireOptions, UsingOptions, NodeResult, LockKey, LockKeys, RedlockClient, LeaseState, DistributedLockCallOptions,
  FencingOptions, LeaseEvent, LeaseObserver, LeaseTransactionOptions,
} from './redis';
// Redis leases bound to the database: fencing counters in an installed DataSource (registers the TypeORM resolver)
import './orm/typeorm/lease-database';
export { createFencingTable, dropFencingTable, type FencingTableOptions } from './orm/typeorm/fencing-table';
export { DistributedLock, type DistributedLockOptions, type DistributedLockKey } from '../decorators/DistributedLock';
