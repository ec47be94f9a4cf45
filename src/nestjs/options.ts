import type { DynamicModule, FactoryProvider, ModuleMetadata } from '@nestjs/common';
import type { InstallLockingOptions } from '../orm/install-options';
import type { RedlockClient, RedlockOptions } from '../redis/redlock';
import { dataSourceTwice } from '../faults/nestjs';
import { badOption, unknownOptions } from '../faults/options';

/** A TypeORM DataSource of `@nestjs/typeorm`, by its name (`'default'` for the unnamed one), with its own settings if wanted. */
export type OrmlockDataSourceEntry = string | ({ name: string } & InstallLockingOptions);

/** A Redis node of the module's Redlock: a redis:// URL, ioredis options, or an ioredis client of yours. */
export type OrmlockRedisNode = string | OrmlockRedisConnectionOptions | RedlockClient;

/**
 * ioredis' constructor options, passed to `new Redis(options)` as they are (written structurally,
 * so that these types need no `ioredis` to type-check).
 */
export interface OrmlockRedisConnectionOptions {
  host?: string;
  port?: number;
  path?: string;
  username?: string;
  password?: string;
  db?: number;
  [option: string]: unknown;
}

export interface OrmlockRedisOptions extends RedlockOptions {
  /**
   * Independent Redis nodes (quorum ⌊n/2⌋+1). URLs and options become clients the module owns
   * and quits on shutdown; clients you pass stay yours (the module never quits them).
   * The Redlock's `namespace` defaults to the module's.
   */
  nodes: readonly OrmlockRedisNode[];
}

export interface OrmlockMikroOrmOptions extends InstallLockingOptions {
  /** The `contextName` given to `MikroOrmModule.forRoot` when there are several (default: the only one). */
  contextName?: string;
}

/** `OrmlockModule.forRoot(options)`: installLocking's options for every installation, and what to install on. */
export interface OrmlockModuleOptions extends InstallLockingOptions {
  /**
   * The `@nestjs/typeorm` DataSources to install on, by name (`'default'` is the unnamed one);
   * an entry `{ name, ...installLockingOptions }` overrides the module's options for that one.
   * Default: `['default']`, or none when `mikroOrm` is set.
   */
  dataSources?: readonly OrmlockDataSourceEntry[];
  /** Install on the MikroORM instance of `@mikro-orm/nestjs` too (needs `ormlock/mikro-orm`'s peers). */
  mikroOrm?: boolean | OrmlockMikroOrmOptions;
  /** Provide a `Redlock` over these nodes, injected with `@InjectRedlock()` and closed on shutdown. */
  redis?: OrmlockRedisOptions;
}

/** `OrmlockModule.forRootAsync(...)`: the options come from a factory with injected dependencies (e.g. ConfigService). */
export interface OrmlockModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  useFactory: (...args: any[]) => OrmlockModuleOptions | Promise<OrmlockModuleOptions>;
  inject?: FactoryProvider['inject'];
  /**
   * The DataSource names the factory will ask for, when they are not just `'default'`: the module
   * then waits for exactly those providers before it installs (names the factory adds later are
   * installed at the latest before any non-global module's `onModuleInit`).
   */
  dataSources?: readonly string[];
  /** Likewise: the factory will set `mikroOrm`. */
  mikroOrm?: boolean | { contextName?: string };
  /** Extra providers for the factory's own `inject`. */
  extraProviders?: DynamicModule['providers'];
}

/** One thing to install on, after the options are resolved. */
export type InstallTarget =
  { kind: 'typeorm'; name: string; options: InstallLockingOptions } | { kind: 'mikro-orm'; contextName?: string; options: InstallLockingOptions };

const INSTALL_KEYS = ['namespace', 'lockTimeoutMs', 'advisoryTimeoutMs', 'connectionTimeoutMs', 'observers', 'onLockEvent', 'pooler'] as const;
const MODULE_KEYS = new Set<string>([...INSTALL_KEYS, 'dataSources', 'mikroOrm', 'redis']);

/** installLocking's own options out of a wider object (installLocking validates their values). */
export function installOptionsOf(source: object): InstallLockingOptions {
  const out: Record<string, unknown> = {};
  for (const key of INSTALL_KEYS) if ((source as Record<string, unknown>)[key] !== undefined) out[key] = (source as Record<string, unknown>)[key];
  return out as InstallLockingOptions;
}

const where = (caller: string) => `OrmlockModule.${caller}`;

/**
 * Checks the module's options (before anything is connected) and lists what to install on.
 * A mistake is a LockConfigError naming the option and how to fix it.
 */
export function installTargets(options: OrmlockModuleOptions, caller = 'forRoot'): InstallTarget[] {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw badOption(where(caller), 'options', 'an object', options);
  }
  const unknown = Object.keys(options).filter((k) => !MODULE_KEYS.has(k));
  if (unknown.length) {
    throw unknownOptions(where(caller), unknown, [...MODULE_KEYS]);
  }
  const base = installOptionsOf(options);
  const targets: InstallTarget[] = [];
  const { dataSources, mikroOrm } = options;
  if (dataSources !== undefined && !Array.isArray(dataSources)) {
    throw badOption(where(caller), 'dataSources', "an array of DataSource names, e.g. ['default', 'analytics']", dataSources);
  }
  if (mikroOrm !== undefined && typeof mikroOrm !== 'boolean' && (mikroOrm === null || typeof mikroOrm !== 'object' || Array.isArray(mikroOrm))) {
    throw badOption(where(caller), 'mikroOrm', 'true, false or { contextName?, ...installLocking options }', mikroOrm);
  }
  const names = dataSources ?? (mikroOrm ? [] : ['default']);
  const seen = new Set<string>();
  names.forEach((entry, i) => {
    const name = typeof entry === 'string' ? entry : entry !== null && typeof entry === 'object' ? entry.name : undefined;
    if (typeof name !== 'string' || name.length === 0) {
      throw badOption(
        where(caller),
        `dataSources[${i}]`,
        "a DataSource name (the `name` given to TypeOrmModule.forRoot, 'default' for the unnamed one) or { name, ...options }",
        entry,
      );
    }
    if (seen.has(name)) throw dataSourceTwice(where(caller), name);
    seen.add(name);
    targets.push({ kind: 'typeorm', name, options: typeof entry === 'string' ? base : { ...base, ...installOptionsOf(entry) } });
  });
  if (mikroOrm) {
    const own = typeof mikroOrm === 'object' ? mikroOrm : {};
    if (own.contextName !== undefined && (typeof own.contextName !== 'string' || own.contextName.length === 0)) {
      throw badOption(where(caller), 'mikroOrm.contextName', 'the non-empty contextName given to MikroOrmModule.forRoot', own.contextName);
    }
    targets.push({ kind: 'mikro-orm', contextName: own.contextName, options: { ...base, ...installOptionsOf(own) } });
  }
  if (options.redis !== undefined) redisProblems(options.redis, caller);
  return targets;
}

function redisProblems(redis: OrmlockRedisOptions, caller: string): void {
  if (redis === null || typeof redis !== 'object' || !Array.isArray(redis.nodes) || redis.nodes.length === 0) {
    throw badOption(where(caller), 'redis', '{ nodes: [...] } with at least one redis:// URL, ioredis options object or client', redis);
  }
  redis.nodes.forEach((node, i) => {
    if (typeof node === 'string') {
      if (!/^rediss?:\/\//.test(node)) throw badOption(where(caller), `redis.nodes[${i}]`, 'a redis:// or rediss:// URL', node);
    } else if (node === null || typeof node !== 'object') {
      throw badOption(where(caller), `redis.nodes[${i}]`, 'a URL, ioredis options or an ioredis client', node);
    }
  });
}
