import { MikroORM, type Options } from '@mikro-orm/core';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { installLocking, type InstallLockingOptions, type MikroOrmLockingHandle } from '../../src/orm/mikro-orm';
import { BACKENDS, dataSourceOptions, type BackendName } from './backends';

export interface MikroEnv {
  readonly name: BackendName;
  readonly orm: MikroORM;
  readonly handle: MikroOrmLockingHandle;
  /** Every statement sent through the ORM's knex (BEGIN/COMMIT included), for round-trip counts. */
  readonly log: string[];
}

export interface MikroSuiteOptions {
  install?: InstallLockingOptions;
  backends?: BackendName[];
  poolSize?: number;
  subscribers?: Options['subscribers'];
  /** Drop and re-create the schema (default true; child processes pass false). */
  fresh?: boolean;
}

/** A MikroORM instance on a backend's per-process test database (not installed), or null when unavailable. */
export async function createMikroOrm(name: BackendName, entities: Function[], options: MikroSuiteOptions = {}): Promise<MikroORM | null> {
  const ds = await dataSourceOptions(name, []);
  if (!ds) return null;
  const url = (ds as { url: string }).url;
  const orm = await MikroORM.init({
    driver: (name === 'postgres' ? PostgreSqlDriver : MariaDbDriver) as never,
    clientUrl: url,
    dbName: new URL(url).pathname.slice(1),
    entities,
    pool: { min: 0, max: options.poolSize ?? 40 },
    allowGlobalContext: false,
    subscribers: options.subscribers,
    debug: false,
  } as Options);
  if (options.fresh ?? true) await orm.schema.refreshDatabase();
  return orm;
}

/** Counts statements: knex's `query` event fires for each one sent, BEGIN/COMMIT/SAVEPOINT included. */
export function logStatements(orm: MikroORM, log: string[]): void {
  const knex = (orm.em.getConnection() as any).getKnex();
  knex.on('query', (q: { sql: string }) => log.push(q.sql));
}

/**
 * `describe` once per backend with a fresh MikroORM schema for `entities`, ormlock installed
 * (ormlock/mikro-orm). An unavailable backend skips loudly (or fails under CI, see backends.ts).
 */
export function describeEachMikroBackend(title: string, entities: Function[], body: (env: MikroEnv) => void, options: MikroSuiteOptions = {}): void {
  for (const name of options.backends ?? BACKENDS) {
    describe(`${title} [mikro-orm, ${name}]`, function () {
      const env = { name, log: [] } as unknown as { -readonly [K in keyof MikroEnv]: MikroEnv[K] };
      before(async function () {
        const orm = await createMikroOrm(name, entities, options);
        if (!orm) return this.skip();
        env.orm = orm;
        logStatements(orm, env.log);
        env.handle = await installLocking(orm, options.install);
      });
      after(async () => {
        env.handle?.uninstall();
        await env.orm?.close(true);
      });
      body(env);
    });
  }
}
