import type { DataSource, EntitySubscriberInterface } from 'typeorm';
import { lockMetadataOf, onDeclaration } from '../../metadata/registry';
import { observersOf } from '../../observe/events';
import { checkInstallOptions, withPoolerMode, type InstallLockingOptions } from '../install-options';
import {
  addInstallation,
  installationOf,
  installOnce,
  Installation,
  liveInstallations,
  removeInstallation,
  type InstallationSettings,
} from '../../installations';
import { bindDataSource, dataSourceBindingProblems } from './bind-data-source';
import { dataSourceName } from './compat';
import { CoreSubscriber } from './core-subscriber';
import type { InstallContext } from './feature';
import { features } from './features';
import { notInitialized } from '../../faults/options';
import { acquirePatches, neededPatches } from './internals';
import type { PatchLease } from '../patching';
import { probeError } from './internals/patch';
import { bindExistingRepositories } from './internals/repository';
import { TypeOrmPort } from './typeorm-port';

import type { LockingHandle as Handle } from './public-types';
import { alreadyInstalled, notAnOrmInstance } from '../../faults/installations';
import { uninstallOnEnd } from '../uninstall-on-end';

export type { InstallLockingOptions } from '../install-options';

/** What `installLocking(dataSource)` returns (the DataSource typed as TypeORM's own here). */
export type LockingHandle = Handle<DataSource>;

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
    throw notAnOrmInstance(
      'installLocking(dataSource, options?)',
      'a TypeORM DataSource',
      dataSource,
      "for a MikroORM instance import installLocking from 'ormlock/mikro-orm'",
    );
  }
  if (!dataSource.isInitialized) {
    throw notInitialized('installLocking(dataSource)', `DataSource '${dataSourceName(dataSource)}'`);
  }
  if (installationOf(dataSource)?.port.isLive) {
    throw alreadyInstalled('installLocking(dataSource)', `DataSource '${dataSourceName(dataSource)}'`);
  }
  const checked = checkOptions(options);
  return installOnce(dataSource, `DataSource '${dataSourceName(dataSource)}'`, () => install(dataSource, options, checked));
}

async function install(dataSource: DataSource, options: InstallLockingOptions, checked: InstallationSettings): Promise<LockingHandle> {
  const port = new TypeOrmPort(dataSource);
  const dialect = await port.detectDialect();
  const settings = await withPoolerMode(checked, options.pooler, port, dialect);
  const ctx: InstallContext = { dataSource, dialect, settings };

  for (const entity of dataSource.entityMetadatas) {
    if (typeof entity.target !== 'function') continue;
    const declared = lockMetadataOf(entity.target);
    if (!declared) continue;
    for (const feature of features) feature.validate?.(entity, declared, ctx);
  }

  const bindingProblems = dataSourceBindingProblems(dataSource);
  if (bindingProblems.length) throw probeError(bindingProblems);
  const patches = acquirePatches(neededPatches()); // probes first: throws naming the internal, having patched nothing
  const inst = new Installation(port, dialect, settings, observersOf(options));
  let unbind: (() => void) | undefined;
  let subscribers: EntitySubscriberInterface[] = [];
  try {
    subscribers = [new CoreSubscriber(inst), ...features.flatMap((f) => f.subscribers?.(inst) ?? [])];
    unbind = bindDataSource(dataSource, inst);
    bindExistingRepositories(dataSource);
  } catch (error) {
    unbind?.();
    patches.release();
    throw error;
  }
  // after the user's own: installing changes no index a program reads (TypeORM starts every
  // subscriber's before-hook at once, so ormlock's order among the user's is not what orders its locks)
  (dataSource.subscribers as EntitySubscriberInterface[]).push(...subscribers);
  addInstallation(inst);
  leases.set(inst, patches);

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
    leases.delete(inst);
    patches.release();
  };
  const restoreDestroy = uninstallOnEnd(dataSource, 'destroy', uninstall);
  return { dataSource, dialect, installation: inst, uninstall };
}

function checkOptions(options: InstallLockingOptions): InstallationSettings {
  return checkInstallOptions(options);
}

/** Each live installation's share of the patched internals. */
const leases = new Map<Installation, PatchLease>();

/**
 * A declaration made after installLocking (`versioned(X)`, `lockedTree(X)`, a decorated class
 * loaded late) takes effect: it is validated against every installed DataSource that has the
 * entity (LockConfigError, and the declaration is undone, when it is misdeclared there), and
 * the patches it needs are applied, counted for every live installation.
 */
onDeclaration((cls) => {
  const installed = liveInstallations().filter((inst) => inst.port instanceof TypeOrmPort);
  if (!installed.length) return;
  const declared = lockMetadataOf(cls);
  for (const inst of installed) {
    const dataSource = inst.port.target as DataSource;
    if (!declared || !dataSource.hasMetadata(cls)) continue;
    const entity = dataSource.getMetadata(cls);
    for (const feature of features) feature.validate?.(entity, declared, { dataSource, dialect: inst.dialect, settings: inst.settings });
  }
  const needed = neededPatches();
  for (const inst of installed) leases.get(inst)?.extend(needed);
});
