import type { LockConfigError } from '../errors';
import { installationOf } from '../installations';
import type { LockingHandle, TypeOrmDataSourceLike } from '../orm/typeorm/public-types';
import { dataSourceToken, mikroOrmAdapter, mikroOrmToken, typeOrmAdapter } from './optional-packages';
import type { OrmlockHandle } from './handle';
import type { InstallTarget } from './options';
import { installedTwice, noInstallTarget, notInitializedByNest } from '../faults/nestjs';

/** One installation the module made. */
export interface OrmlockModuleInstallation {
  readonly kind: 'typeorm' | 'mikro-orm';
  /** The DataSource name, or the MikroORM contextName (`'default'` when none). */
  readonly name: string;
  /** The TypeORM DataSource or the MikroORM instance. */
  readonly target: object;
  /** installLocking's handle (for a DataSource its LockingHandle, for MikroORM ormlock/mikro-orm's). */
  readonly handle: OrmlockHandle;
}

export type { OrmlockHandle } from './handle';

/** Looks a provider up in the Nest container: the instance, or undefined when there is none. */
export type ProviderLookup = (token: string | Function) => unknown;

/** The provider's token of a target. */
export function tokenOf(target: InstallTarget): string | Function {
  return target.kind === 'typeorm' ? dataSourceToken(target.name) : mikroOrmToken(target.contextName);
}

function label(target: InstallTarget): string {
  return target.kind === 'typeorm' ? `TypeORM DataSource '${target.name}'` : `MikroORM instance${target.contextName ? ` '${target.contextName}'` : ''}`;
}

function missing(target: InstallTarget): LockConfigError {
  const fix =
    target.kind === 'typeorm'
      ? target.name === 'default'
        ? 'import TypeOrmModule.forRoot({ … }) (or forRootAsync) in the application, or list the DataSources to install on in dataSources: [...]'
        : `import TypeOrmModule.forRoot({ name: '${target.name}', … }), or remove '${target.name}' from dataSources`
      : `import MikroOrmModule.forRoot({ …${target.contextName ? ` contextName: '${target.contextName}'` : ''} }) from @mikro-orm/nestjs, or drop mikroOrm`;
  return noInstallTarget(label(target), fix);
}

/**
 * What the module installed, in order; injectable as `OrmlockInstallations` (e.g. to read a
 * DataSource's dialect, or to check in a test that nothing is left installed).
 */
export class OrmlockInstallations {
  private readonly made: OrmlockModuleInstallation[] = [];
  private pending: InstallTarget[] = [];
  private closed = false;

  /** Every installation the module made (until the application closes). */
  get all(): readonly OrmlockModuleInstallation[] {
    return this.made;
  }

  /**
   * The handle of the TypeORM DataSource named `name` (`'default'` unless given), if the module
   * installed on it; `dataSource<DataSource>()` types its `dataSource` as TypeORM's own.
   */
  dataSource<D extends TypeOrmDataSourceLike = TypeOrmDataSourceLike>(name = 'default'): LockingHandle<D> | undefined {
    return this.made.find((m) => m.kind === 'typeorm' && m.name === name)?.handle as LockingHandle<D> | undefined;
  }

  /** The handle of the MikroORM instance, if the module installed on it. */
  mikroOrm(contextName?: string): OrmlockHandle | undefined {
    return this.made.find((m) => m.kind === 'mikro-orm' && m.name === (contextName ?? 'default'))?.handle;
  }

  /** Installs on each target (those `lookup` cannot give yet are kept for `installPending`); on a failure, undoes what it did. */
  async install(targets: readonly InstallTarget[], lookup: ProviderLookup, defer: boolean): Promise<void> {
    try {
      for (const target of targets) {
        const instance = lookup(tokenOf(target));
        if (instance === undefined || instance === null) {
          if (defer) {
            this.pending.push(target);
            continue;
          }
          throw missing(target);
        }
        await this.installOne(target, instance as object);
      }
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /** Installs what `install` kept for later (every provider exists by now). */
  async installPending(lookup: ProviderLookup): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    await this.install(pending, lookup, false);
  }

  private async installOne(target: InstallTarget, instance: object): Promise<void> {
    if (installationOf(instance)?.port.isLive) {
      throw installedTwice(label(target));
    }
    if (target.kind === 'typeorm') {
      const ds = instance as { isInitialized?: boolean };
      if (ds.isInitialized === false) {
        throw notInitializedByNest(label(target));
      }
      const handle = await typeOrmAdapter().installLocking(instance, target.options);
      this.made.push({ kind: 'typeorm', name: target.name, target: instance, handle });
    } else {
      const handle = await mikroOrmAdapter().installLocking(instance, target.options);
      this.made.push({ kind: 'mikro-orm', name: target.contextName ?? 'default', target: instance, handle });
    }
  }

  /** Uninstalls everything the module installed, last first (idempotent). */
  async close(): Promise<void> {
    const made = this.made.splice(0).reverse();
    this.pending = [];
    let first: unknown;
    for (const m of made) {
      try {
        await m.handle.uninstall();
      } catch (error) {
        first ??= error;
      }
    }
    this.closed = true;
    if (first !== undefined) throw first;
  }

  /** True once the application closed (or installing failed). */
  get isClosed(): boolean {
    return this.closed;
  }
}
