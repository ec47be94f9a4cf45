/**
 * The faults of `ormlock/nestjs` (src/nestjs/): the module's options, what it installs on. One
 * factory per fault, one wording; the caller throws what it returns. Shared faults (a wrong
 * option value, a missing package) are in ./options.
 */
import { LockConfigError } from '../errors';

/** What the module was asked to install on is not in the application; `fix` says how to add it. */
export function noInstallTarget(label: string, fix: string): LockConfigError {
  return new LockConfigError(`OrmlockModule: there is no ${label} in the application to install locking on: ${fix}.`);
}

/** The application called installLocking itself on what the module installs on. */
export function installedTwice(label: string): LockConfigError {
  return new LockConfigError(
    `OrmlockModule: the ${label} is already installed — installLocking() was called by the application as well ` +
      '(in a dataSourceFactory, an onModuleInit, a provider): OrmlockModule installs it; drop the other installLocking call.',
  );
}

/** The DataSource is not initialized when the module installs (manualInitialization). */
export function notInitializedByNest(label: string): LockConfigError {
  return new LockConfigError(
    `OrmlockModule: ${label} is not initialized when locking is installed; let TypeOrmModule initialize it (do not set manualInitialization).`,
  );
}

/** `mikroOrm.contextName` with a @mikro-orm/nestjs that cannot name contexts. */
export function mikroOrmNestTooOld(): LockConfigError {
  return new LockConfigError('OrmlockModule: this @mikro-orm/nestjs has no getMikroORMToken(); mikroOrm.contextName needs @mikro-orm/nestjs 6.1 or later');
}

/** `dataSources` names one DataSource twice. */
export function dataSourceTwice(caller: string, name: string): LockConfigError {
  return new LockConfigError(`${caller}: dataSources names '${name}' twice`);
}
