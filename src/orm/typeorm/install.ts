import type { DataSource, EntitySubscriberInterface } from 'typeorm';
import { detectDialect } from '../../dialects';
import type { LockDialect } from '../../dialects/dialect';
import { LockConfigError } from '../../errors';
import { lockMetadataOf } from '../../metadata/registry';
import { settings, type LockEvent } from '../../settings';
import { bindDataSource } from './bind-data-source';
import type { InstallContext } from './feature';
import { features } from './features';
import { addInstallation, installationOf, removeInstallation } from './installations';
import { patchSelectQueryBuilder } from './patch-query-builder';
import { patchRepositoryManager } from './patch-repository';

export interface InstallLockingOptions {
  /** Prefix of advisory-lock and Redis keys (e.g. your application's name). */
  namespace?: string;
  /** Default `timeoutMs` of row locks (undefined: wait as long as the database does). */
  lockTimeoutMs?: number;
  /** Default `timeoutMs` of advisory locks. */
  advisoryTimeoutMs?: number;
  /** Called on lock events: acquired (with waited ms), released, timeout, not available, lost. */
  onLockEvent?: (event: LockEvent) => void;
}

export interface LockingHandle {
  readonly dataSource: DataSource;
  readonly dialect: LockDialect;
  /** Removes the subscribers and the transaction binding of this DataSource. */
  uninstall(): void;
}

/**
 * Sets ormlock up on an initialized DataSource: picks the dialect, validates every decorated
 * entity (a misdeclared decorator throws LockConfigError here, naming entity and property),
 * registers the subscribers and binds managers and repositories to the ambient transaction.
 * Nothing is changed when it throws.
 *
 * ```ts
 * await dataSource.initialize();
 * const locking = await installLocking(dataSource, { namespace: 'shop' });
 * ```
 */
export async function installLocking(dataSource: DataSource, options: InstallLockingOptions = {}): Promise<LockingHandle> {
  if (!dataSource || typeof (dataSource as any).createQueryRunner !== 'function') {
    throw new LockConfigError('installLocking(dataSource): expected a TypeORM DataSource');
  }
  if (!dataSource.isInitialized) {
    throw new LockConfigError('installLocking(dataSource): call `await dataSource.initialize()` first.');
  }
  if (installationOf(dataSource)) {
    throw new LockConfigError('installLocking(dataSource): already installed on this DataSource; call uninstall() on its handle first.');
  }
  checkOptions(options);
  const dialect = await detectDialect(dataSource);
  const ctx: InstallContext = { dataSource, dialect };

  for (const entity of dataSource.entityMetadatas) {
    if (typeof entity.target !== 'function') continue;
    const declared = lockMetadataOf(entity.target);
    if (!declared) continue;
    for (const feature of features) feature.validate?.(entity, declared, ctx);
  }

  const subscribers: EntitySubscriberInterface[] = features.flatMap((f) => f.subscribers?.(ctx) ?? []);
  patchRepositoryManager();
  patchSelectQueryBuilder();
  for (const feature of features) feature.install?.();
  const unbind = bindDataSource(dataSource);
  (dataSource.subscribers as EntitySubscriberInterface[]).unshift(...subscribers);
  addInstallation({ dataSource, dialect });
  if (options.namespace !== undefined) settings.namespace = options.namespace;
  settings.defaultLockTimeoutMs = options.lockTimeoutMs;
  settings.defaultAdvisoryTimeoutMs = options.advisoryTimeoutMs;
  settings.onLockEvent = options.onLockEvent;

  return {
    dataSource,
    dialect,
    uninstall() {
      const list = dataSource.subscribers as EntitySubscriberInterface[];
      for (const s of subscribers) {
        const i = list.indexOf(s);
        if (i >= 0) list.splice(i, 1);
      }
      unbind();
      removeInstallation(dataSource);
    },
  };
}

function checkOptions(options: InstallLockingOptions): void {
  if (options.namespace !== undefined && typeof options.namespace !== 'string') {
    throw new LockConfigError(`installLocking: namespace must be a string (got ${typeof options.namespace})`);
  }
  for (const key of ['lockTimeoutMs', 'advisoryTimeoutMs'] as const) {
    const v = options[key];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      throw new LockConfigError(`installLocking: ${key} must be a number ≥ 0 (got ${String(v)})`);
    }
  }
  if (options.onLockEvent !== undefined && typeof options.onLockEvent !== 'function') {
    throw new LockConfigError('installLocking: onLockEvent must be a function');
  }
}
