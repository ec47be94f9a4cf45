/**
 * ormlock: declarative concurrency control for TypeORM. The exported names are a contract
 * (docs/api.md); add freely, rename only with a written reason.
 */
// setup
export { installLocking } from './orm/typeorm/lazy';
export type { InstallLockingOptions } from './orm/install-options';
export type { LockingHandle } from './orm/typeorm/public-types';
export type { LockEvent, LockObserver } from './observe/events';
export type { Installation, InstallationSettings } from './installations';
export type { OrmPort, PortConnection, EntityDescriptor, OrmManager, OrmConnection } from './orm/port';
export type { LockEventType, LockEventKind, LockEventDb } from './observe/events';
export type { PoolerMode } from './orm/pooler';
// context
export { transaction, currentManager, inTransaction, type TransactionOptions, type Propagation, type IsolationLevel } from './context/transaction';
export { Current, defineCurrent, type TypedCurrent } from './context/current';
export { currentLockSignal } from './context/lock-signal';
export { afterCommit, afterRollback, afterCompletion, type CompletionOutcome, type CommitHookOptions } from './context/commit-hooks';
export { Transactional } from '../decorators/Transactional';
// row locks
export { lock, withLock, withPessimistic, type PessimisticMethodOptions, type RowLockOptions, type RowLockMode, type OnLocked } from './locks/pessimistic';
export type { LockCallOptions } from './locks/row-lock';
export { Pessimistic } from '../decorators/Pessimistic';
// dialects (for advanced use and tests)
export type { LockDialect, DialectCapabilities, BeginWithStatement } from './dialects/dialect';
// errors
export {
  LockError,
  LockTimeoutError,
  LockNotAvailableError,
  DeadlockError,
  SerializationError,
  StaleEntityError,
  TransactionRequiredError,
  TransactionNotAllowedError,
  LockConfigError,
  LockLostError,
  UniqueViolationError,
  PoolExhaustedError,
  type LockErrorDetails,
} from './errors';
// parent lock around create (nested sets)
export { AroundCreate } from '../decorators/AroundCreate';
export {
  lockParent,
  addAroundCreate,
  isParentLockHook,
  type ParentLockOptions,
  type ParentLockHook,
  type ParentLockDeclaration,
  type AroundCreateHook,
  type AroundCreateContext,
  type AroundCreateRunContext,
  type ParentRef,
} from './locks/parent';
export { lockRowOn } from './orm/typeorm/lazy';
// TypeORM @Tree entities
export { LockedTree } from '../decorators/LockedTree';
export { lockedTree, type LockedTreeOptions } from './locks/tree';
// optimistic versions, retries and unique rows
export { Versioned } from '../decorators/Versioned';
export { RetryOnConflict } from '../decorators/RetryOnConflict';
export { versioned, type VersionedOptions } from './locks/optimistic';
export { retryOnConflict, isRetryableConflict, type RetryOptions, type RetryInfo, type RetryMatcher } from './locks/retry';
export { createOrFind } from './locks/create-or-find';
export { addVersionColumn, dropVersionColumn } from './orm/typeorm/lazy';
export type { AddVersionColumnOptions } from './orm/typeorm/public-types';
// advisory locks
export { AdvisoryLock, type AdvisoryLockKey } from '../decorators/AdvisoryLock';
export {
  withAdvisoryLock,
  withAdvisoryLocks,
  advisoryLockExists,
  advisoryLockId,
  advisoryKeys,
  AdvisoryKeySet,
  type AdvisoryLockOptions,
  type AdvisoryLockSkipOptions,
  type AdvisoryLockContext,
  type AdvisoryLockExistsOptions,
  type AdvisoryScope,
  type OnAdvisoryTimeout,
  type AdvisoryKey,
  type AdvisoryKeyPart,
  type AdvisoryKeyValue,
} from './locks/advisory';
// Redis leases
export { Redlock, Lease, withDistributedLock } from './redis';
export { releaseAfterCommit } from './redis/release-after-commit';
export type {
  RedlockOptions,
  AcquireOptions,
  UsingOptions,
  NodeResult,
  LockKey,
  LockKeys,
  RedlockClient,
  LeaseState,
  DistributedLockCallOptions,
  FencingOptions,
  LeaseTransactionOptions,
} from './redis';
// Counting semaphores on the database
export { withSemaphore } from './locks/semaphore';
export type { SemaphoreOptions, SemaphorePermit, SemaphoreSkipOptions } from './locks/semaphore';
export { Semaphore, type SemaphoreDecoratorOptions } from '../decorators/Semaphore';
// Redis counting semaphores (redlock.semaphore(name, permits))
export { RedisSemaphore } from './redis';
export type { RedisPermit, SemaphoreUsingOptions } from './redis';
// Redis leases bound to the database: the fencing counter table
export { createFencingTable, dropFencingTable } from './orm/typeorm/lazy';
export type { FencingTableOptions } from './orm/typeorm/public-types';
export { DistributedLock, type DistributedLockOptions, type DistributedLockKey } from '../decorators/DistributedLock';

export { withScheduledLock, type ScheduledLockOptions, type ScheduledRun, type ScheduledRunContext } from './locks/scheduled';
export { ScheduledLock, type ScheduledLockDecoratorOptions } from '../decorators/ScheduledLock';
export { createScheduledLockTable, dropScheduledLockTable } from './orm/typeorm/lazy';
export type { ScheduledLockTableOptions } from './orm/typeorm/scheduled-options-type';
// observability: who waits on whom
export { inspectLocks, inspectWith, type InspectLocksOptions, type InspectTarget, type LockWait } from './observe/inspect-locks';
export type { ConnectionTarget } from './observe/connect';
export { formatLockTable } from './observe/format';
