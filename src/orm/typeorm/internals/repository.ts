import { Repository, type DataSource } from 'typeorm';
import { ambientConnection } from '../../../context/store';
import { installationOf } from '../../../installations';
import { dataSourceOf } from '../compat';
import type { InternalPatch } from './patch';

const OWN_MANAGER = Symbol('ormlock.ownManager');
const LABEL = 'Repository.prototype.manager';
/** Repositories whose `manager` the accessor serves, to give them their own property back on restore. */
const served = new Set<WeakRef<Record<symbol, unknown>>>();

/**
 * Makes every Repository — also one obtained before the transaction began, injected in a
 * constructor, or created before installLocking — use the ambient transaction's manager of its
 * own DataSource. TypeORM assigns `this.manager` in the constructor, so an accessor on the
 * prototype sees every new instance; `bindExistingRepositories` moves the own property of
 * instances made before.
 */
export const repositoryManagerPatch: InternalPatch = {
  name: LABEL,
  probe() {
    const d = Object.getOwnPropertyDescriptor(Repository.prototype, 'manager');
    if (d && !d.configurable) return [`${LABEL} is not configurable`];
    const probe = new (Repository as any)(Object, { probe: true });
    return Object.prototype.hasOwnProperty.call(probe, 'manager') || d?.get ? [] : ['new Repository(target, manager) no longer sets this.manager'];
  },
  apply() {
    const original = Object.getOwnPropertyDescriptor(Repository.prototype, 'manager');
    Object.defineProperty(Repository.prototype, 'manager', {
      configurable: true,
      enumerable: true,
      get(this: Record<symbol, any>) {
        const own = this[OWN_MANAGER];
        const inst = installationOf(dataSourceOf(own));
        const connection = inst && ambientConnection(inst);
        return connection ? connection.manager : own;
      },
      set(this: Record<symbol, any>, manager: unknown) {
        if (!(OWN_MANAGER in this)) served.add(new WeakRef(this));
        this[OWN_MANAGER] = manager;
      },
    });
    return () => {
      if (original) Object.defineProperty(Repository.prototype, 'manager', original);
      else delete (Repository.prototype as any).manager;
      for (const ref of served) {
        const repo = ref.deref();
        if (repo) Object.defineProperty(repo, 'manager', { configurable: true, enumerable: true, writable: true, value: repo[OWN_MANAGER] });
      }
      served.clear();
    };
  },
};

/** Binds the repositories a DataSource cached before installLocking (Nest injects them first). */
export function bindExistingRepositories(ds: DataSource): void {
  const manager = (Object.getPrototypeOf(ds) === ds ? undefined : (ds as any).manager) as any;
  const repos: unknown[] = [...(manager?.repositories?.values?.() ?? []), ...(Array.isArray(manager?.treeRepositories) ? manager.treeRepositories : [])];
  for (const repo of repos) {
    if (repo === null || typeof repo !== 'object' || !Object.prototype.hasOwnProperty.call(repo, 'manager')) continue;
    const value = (repo as { manager: unknown }).manager;
    delete (repo as { manager?: unknown }).manager;
    (repo as { manager: unknown }).manager = value; // through the accessor's setter
  }
}
