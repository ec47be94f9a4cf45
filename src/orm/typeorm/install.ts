import type { DataSource, EntitySubscriberInterface } from 'typeorm';
import type { LockDialect } from '../../dialects/dialect';
import { LockConfigError } from '../../errors';
import { lockMetadataOf } from '../../metadata/registry';
import { observerOptionProblems, observersOf, type LockEvent, type LockObserver } from '../../observe/events';
import { addInstallation, installationOf, Installation, removeInstallation, type InstallationSettings } from '../installations';
import { bindDataSource } from './bind-data-source';
import { dataSourceName } from './compat';
import { CoreSubscriber } from './core-subscriber';
import type { InstallContext } from './feature';
import { features } from './features';
import { acquirePatches, neededPatches, releasePatches } from './internals';
import { bindExistingRepositories } from './internals/repository';
import { TypeOrmPort } from './typeorm-port';

export interface InstallLockingOptions {
  /** Prefix of advisory-lock keys (e.g. your application's name); this installation's only. */
  namespace?: string;
  /** Default `timeoutMs` of row locks (undefined: wait as long as the database does). */
  lockTimeoutMs?: number;
  /** Default `timeoutMs` of advisory locks. */
  advisoryTimeoutMs?: number;
  /**
   * Longest wait for a second pool connection by a call that already holds one (`requires_new`,
   * session locks): past it, PoolExhaustedError instead of a wait that could last forever. Default 5000.
   */
  connectionTimeoutMs?: number;
  /** Observers of this installation's lock events. */
  observers?: readonly LockObserver[];
  /** Shorthand for one observer: called on lock events (acquired with waitedMs, released with heldMs, timeout, not available, lost). */
  onLockEvent?: (event: LockEvent) => void;
}

export interface LockingHandle {
  readonly dataSource: DataSource;
  readonly dialect: LockDialect;
  /** The installation (settings, observers) this handle stands for. */
  readonly installation: Installation;
  /** Removes the subscribers and the transaction binding of this DataSource; the last one restores TypeORM's internals. */
  uninstall(): void;
}

const DEFAULT_CONNECTION_TIMEOUT_MS = 5000;

/**
 * Sets ormlock up on an initialized DataSource: picks the dialect, validates every decorated
 * entity (a misdeclared decorator throws LockConfigError here, naming entity and property),
 * probes the TypeORM internals it patches, registers the subscribers and binds managers and
 * repositories (also those created before) to the ambient transaction. Nothing is changed when
 * it throws. `dataSource.destroy()` uninstalls by itself.
 *
 * ```ts
 * await dataSource.initialize();
 * const locking = await installLocking(dataSource, { namespace: 'shop' });
 * ```
 */
export async function installLocking(dataSource: DataSource, options: InstallLockingOptions = {}): Promise<LockingHandle> {
  if (!dataSource || typeof (dataSource as any).createQueryRunner !== 'function' || typeof (dataSource as any).getMetadata !== 'function') {
    throw new LockConfigError(`installLocking(dataSource, options?): expected a TypeORM DataSource (got ${dataSource === null ? 'null' : typeof dataSource})`);
  }
  if (!dataSource.isInitialized) {
    throw new LockConfigError(`installLocking(dataSource): DataSource '${dataSourceName(dataSource)}' is not initialized: call \`await dataSource.initialize()\` first.`);
  }
  if (installationOf(dataSource)?.port.isLive) {
    throw new LockConfigError(`installLocking(dataSource): already installed on DataSource '${dataSourceName(dataSource)}'; call uninstall() on its handle first.`);
  }
  const settings = checkOptions(options);
  const port = new TypeOrmPort(dataSource);
  const dialect = await port.detectDialect();
  const ctx: InstallContext = { dataSource, dialect, settings };

  for (const entity of dataSource.entityMetadatas) {
    if (typeof entity.target !== 'function') continue;
    const declared = lockMetadataOf(entity.target);
    if (!declared) continue;
    for (const feature of features) feature.validate?.(entity, declared, ctx);
  }

  acquirePatches(neededPatches()); // probes first: throws naming the internal, having patched nothing
  const inst = new Installation(port, dialect, settings, observersOf(options));
  let unbind: (() => void) | undefined;
  let subscribers: EntitySubscriberInterface[] = [];
  try {
    subscribers = [new CoreSubscriber(inst), ...features.flatMap((f) => f.subscribers?.(inst) ?? [])];
    unbind = bindDataSource(dataSource, inst);
    bindExistingRepositories(dataSource);
  } catch (error) {
    unbind?.();
    releasePatches();
    throw error;
  }
  (dataSource.subscribers as EntitySubscriberInterface[]).unshift(...subscribers);
  addInstallation(inst);

  let installed = true;
  const uninstall = () => {
    if (!installed) return;
    installed = false;
    const list = dataSource.subscribers as EntitySubscriberInterface[];
    for (const s of subscribers) {
      const i = list.indexOf(s);
      if (i >= 0) list.splice(i, 1);
    }
    unbind!();
    restoreDestroy();
    removeInstallation(inst);
    releasePatches();
  };
  const restoreDestroy = uninstallOnDestroy(dataSource, uninstall);
  return { dataSource, dialect, installation: inst, uninstall };
}

/** `dataSource.destroy()` first uninstalls (a destroyed DataSource never stays installed). */
function uninstallOnDestroy(dataSource: DataSource, uninstall: () => void): () => void {
  const target = dataSource as any;
  const hadOwn = Object.prototype.hasOwnProperty.call(target, 'destroy');
  const base = target.destroy;
  target.destroy = function (this: DataSource, ...args: unknown[]) {
    uninstall();
    return base.apply(this, args);
  };
  return () => {
    if (hadOwn) target.destroy = base;
    else delete target.destroy;
  };
}

function checkOptions(options: InstallLockingOptions): InstallationSettings {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new LockConfigError(`installLocking(dataSource, options?): options must be an object (got ${options === null ? 'null' : typeof options})`);
  }
  if (options.namespace !== undefined && typeof options.namespace !== 'string') {
    throw new LockConfigError(`installLocking: namespace must be a string (got ${typeof options.namespace})`);
  }
  for (const key of ['lockTimeoutMs', 'advisoryTimeoutMs', 'connectionTimeoutMs'] as const) {
    const v = options[key];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      throw new LockConfigError(`installLocking: ${key} must be a number ≥ 0 (got ${String(v)})`);
    }
  }
  const problems = observerOptionProblems(options);
  if (problems.length) throw new LockConfigError(`installLocking: ${problems.join('; ')}`);
  return {
    namespace: options.namespace ?? '',
    lockTimeoutMs: options.lockTimeoutMs,
    advisoryTimeoutMs: options.advisoryTimeoutMs,
    connectionTimeoutMs: options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
  };
}
