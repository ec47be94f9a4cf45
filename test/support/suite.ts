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
  /**
   * Drop the schema when the suite ends. For entities with a native enum type on PostgreSQL:
   * MikroORM's dropSchema, in a later suite of the same test process, drops every enum type it
   * finds and fails on one that a table left behind still uses.
   */
  dropSchemaAfter?: boolean;
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
        const { install: _install, backends: _backends, dropSchemaAfter: _drop, ...extras } = options;
        const ds = await createDataSource(name, entities, { ...extras, logger: env.log, logging: true });
        if (!ds) return this.skip();
        env.ds = ds;
        env.handle = await installLocking(ds, options.install);
      });
      after(async () => {
        env.handle?.uninstall();
        if (options.dropSchemaAfter && env.ds?.isInitialized) await env.ds.dropDatabase();
        if (env.ds?.isInitialized) await env.ds.destroy();
      });
      body(env);
    });
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
