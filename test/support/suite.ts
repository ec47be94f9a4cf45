import type { DataSource } from 'typeorm';
import { installLocking, type InstallLockingOptions, type LockingHandle } from '../../src';
import { BACKENDS, createDataSource, type BackendName, type DataSourceExtras } from './backends';
import { QueryLog } from './query-log';

export interface SuiteEnv {
  readonly name: BackendName;
  readonly ds: DataSource;
  readonly handle: LockingHandle;
  /** Records the statements sent (for round-trip counts). */
  readonly log: QueryLog;
}

export interface SuiteOptions extends DataSourceExtras {
  install?: InstallLockingOptions;
  /** Run on these backends only (default: all). */
  backends?: BackendName[];
}

/**
 * `describe` once per backend with a fresh schema for `entities`, ormlock installed.
 * An unavailable backend skips loudly (or fails under CI, see backends.ts).
 */
export function describeEachBackend(title: string, entities: Function[], body: (env: SuiteEnv) => void, options: SuiteOptions = {}): void {
  for (const name of options.backends ?? BACKENDS) {
    describe(`${title} [${name}]`, function () {
      const env = { name, log: new QueryLog() } as { -readonly [K in keyof SuiteEnv]: SuiteEnv[K] };
      before(async function () {
        const ds = await createDataSource(name, entities, { ...options, logger: env.log, logging: true });
        if (!ds) return this.skip();
        env.ds = ds;
        env.handle = await installLocking(ds, options.install);
      });
      after(async () => {
        env.handle?.uninstall();
        if (env.ds?.isInitialized) await env.ds.destroy();
      });
      body(env);
    });
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
