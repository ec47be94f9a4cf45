/**
 * ormlock/mikro-orm: the MikroORM 6.6 adapter. Install it once after `MikroORM.init()`; then the
 * names exported by `ormlock` (transaction, lock, withLock, @Pessimistic, @Versioned,
 * @AdvisoryLock, @AroundCreate(lockParent(...)), createOrFind, Current …) work on MikroORM
 * entities and EntityManagers.
 */
export { installLocking, type InstallLockingOptions, type MikroOrmLockingHandle } from './install';
export { MikroOrmConnection } from './connection';
export { MikroOrmPort } from './mikro-orm-port';
export { patchedMikroOrmInternals } from './internals';
