import type { Installation } from '../../installations';

/**
 * The installation of each installed MikroORM instance, by its Configuration: every object of one
 * instance (EntityManagers and forks, driver, connection, UnitOfWork, ChangeSetPersister, query
 * builders) carries that same `config`, so a patched internal finds its installation from `this`.
 */
const byConfig = new WeakMap<object, Installation>();

export function bindConfig(config: object, inst: Installation): void {
  byConfig.set(config, inst);
}

export function unbindConfig(config: object, inst: Installation): void {
  if (byConfig.get(config) === inst) byConfig.delete(config);
}

/** The live installation of the MikroORM instance `x` belongs to (x: anything with `config`). */
export function installationFor(x: unknown): Installation | undefined {
  const config = (x as { config?: unknown } | null | undefined)?.config;
  if (!config || typeof config !== 'object') return undefined;
  const inst = byConfig.get(config);
  return inst && inst.port.isLive ? inst : undefined;
}
