import type { MikroORM } from '@mikro-orm/core';
import type { LockDialect } from '../../dialects/dialect';
import { observersOf } from '../../observe/events';
import { checkInstallOptions, withPoolerMode, type InstallLockingOptions } from '../install-options';
import { addInstallation, installationOf, installOnce, Installation, noteOrigin, removeInstallation } from '../../installations';
import { withMikroOrmErrors } from './errors';
import { acquirePatches, neededPatches } from './internals';
import { MikroOrmPort } from './mikro-orm-port';
import { bindConfig, unbindConfig } from './registry';
import { validateEntities } from './validate';
import { onDeclaration } from '../../metadata/registry';
import { alreadyInstalled, notAnOrmInstance, notConnected } from '../../faults/installations';
import { uninstallOnEnd } from '../uninstall-on-end';

export type { InstallLockingOptions } from '../install-options';

export interface MikroOrmLockingHandle {
  readonly orm: MikroORM;
  readonly dialect: LockDialect;
  /** The installation (settings, observers) this handle stands for. */
  readonly installation: Installation;
  /** Removes ormlock from this MikroORM instance; the last installation restores MikroORM's internals. */
  uninstall(): void;
}

/**
 * Sets ormlock up on a MikroORM instance after `MikroORM.init()`: picks the dialect, validates
 * every decorated entity against MikroORM's metadata (a misdeclared decorator throws
 * LockConfigError here, naming entity and property), probes the MikroORM internals it patches, and
 * makes ormlock's transactions MikroORM's TransactionContext. Nothing is changed when it throws.
 * `orm.close()` uninstalls by itself.
 *
 * ```ts
 * import { MikroORM } from '@mikro-orm/postgresql';
 * import { installLocking } from 'ormlock/mikro-orm';
 * const orm = await MikroORM.init({ … });
 * const locking = await installLocking(orm, { namespace: 'shop' });
 * ```
 */
export async function installLocking(orm: MikroORM, options: InstallLockingOptions = {}): Promise<MikroOrmLockingHandle> {
  const o = orm as unknown as { em?: unknown; config?: unknown; getMetadata?: unknown; isConnected?: unknown };
  if (!orm || typeof o.getMetadata !== 'function' || typeof o.isConnected !== 'function' || !o.em || !o.config) {
    throw notAnOrmInstance(
      'installLocking(orm, options?) from ormlock/mikro-orm',
      'a MikroORM instance',
      orm,
      "for a TypeORM DataSource import installLocking from 'ormlock'",
    );
  }
  const name = orm.config.get('contextName') ?? 'default';
  return installOnce(orm, `MikroORM '${name}'`, () => install(orm, options, name));
}

async function install(orm: MikroORM, options: InstallLockingOptions, name: string): Promise<MikroOrmLockingHandle> {
  if ((orm as any)[CLOSED] || !(await orm.isConnected())) {
    throw notConnected('installLocking(orm)', `MikroORM '${name}'`);
  }
  if (installationOf(orm)?.port.isLive) {
    throw alreadyInstalled('installLocking(orm)', `MikroORM '${name}'`);
  }
  const checked = checkInstallOptions(options, 'installLocking(orm, options?)');
  const port = new MikroOrmPort(orm);
  const dialect = withMikroOrmErrors(await port.detectDialect());
  const settings = await withPoolerMode(checked, options.pooler, port, dialect);
  validateEntities(orm, dialect, settings);
  const patches = acquirePatches(neededPatches(orm), port.ormVersion); // probes first: throws naming the internal, having patched nothing

  const inst = new Installation(port, dialect, settings, observersOf(options));
  bindConfig(orm.config, inst);
  addInstallation(inst);
  lateDeclarations.set(inst, (cls) => {
    if (!orm.getMetadata().find(cls.name)) return;
    validateEntities(orm, dialect, settings);
    patches.extend(neededPatches(orm));
  });
  let installed = true;
  // entities loaded or created through this instance belong to it (lock(entity) goes to its database)
  orm.em.getEventManager().registerSubscriber({
    onInit: (args: { entity: object }) => {
      if (installed) noteOrigin(args.entity, inst);
    },
  } as never);

  const uninstall = () => {
    if (!installed) return;
    installed = false;
    port.closed = true;
    restoreClose();
    unbindConfig(orm.config, inst);
    removeInstallation(inst);
    lateDeclarations.delete(inst);
    patches.release();
  };
  // a closed MikroORM never stays installed; the mark lets a later installLocking refuse it
  const restoreClose = uninstallOnEnd(orm, 'close', uninstall, () => ((orm as any)[CLOSED] = true));
  return { orm, dialect, installation: inst, uninstall };
}

const CLOSED = Symbol('ormlock.closed');

/**
 * A declaration made after installLocking (`versioned(X)`, a decorated class loaded late) takes
 * effect on every installed MikroORM instance that has the entity: validated (LockConfigError,
 * and the declaration is undone, when it is misdeclared there), then the patches it needs applied.
 */
const lateDeclarations = new Map<Installation, (cls: Function) => void>();
onDeclaration((cls) => {
  for (const apply of lateDeclarations.values()) apply(cls);
});
