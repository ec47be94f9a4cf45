import { Global, Inject, Module, type DynamicModule, type OnApplicationShutdown, type OnModuleInit, type Provider } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { Redlock } from '../redis/redlock';
import { OrmlockInstallations, tokenOf, type ProviderLookup } from './installations';
import { installTargets, type InstallTarget, type OrmlockModuleAsyncOptions, type OrmlockModuleOptions } from './options';
import { OrmlockRedis } from './redis';
import { ORMLOCK_MODULE_OPTIONS, ORMLOCK_REDLOCK } from './tokens';
import { badOption } from '../faults/options';

/**
 * Installs ormlock on the TypeORM DataSources of `@nestjs/typeorm` and/or the MikroORM instance
 * of `@mikro-orm/nestjs`, before any provider's `onModuleInit` runs and before the application
 * serves a request, and uninstalls on `app.close()`. Global: import it once, in the root module.
 *
 * ```ts
 * @Module({
 *   imports: [
 *     TypeOrmModule.forRoot({ type: 'postgres', url, autoLoadEntities: true }),
 *     TypeOrmModule.forFeature([User, Order]),
 *     OrmlockModule.forRoot({ namespace: 'shop', redis: { nodes: ['redis://127.0.0.1:6379'] } }),
 *   ],
 *   providers: [Billing],
 * })
 * export class AppModule {}
 * ```
 */
@Global()
@Module({})
export class OrmlockModule implements OnModuleInit, OnApplicationShutdown {
  constructor(
    @Inject(OrmlockInstallations) private readonly installations: OrmlockInstallations,
    @Inject(OrmlockRedis) private readonly redis: OrmlockRedis,
    @Inject(ModuleRef) private readonly moduleRef: ModuleRef,
  ) {}

  /** Installs with these options (`dataSources`, `mikroOrm`, `redis`, and installLocking's: namespace, timeouts, observers). */
  static forRoot(options: OrmlockModuleOptions = {}): DynamicModule {
    const targets = installTargets(options, 'forRoot'); // bad options fail here, at the module's definition
    return build('forRoot', [], { provide: ORMLOCK_MODULE_OPTIONS, useValue: options }, targets.map(tokenOf));
  }

  /**
   * Installs with the options `useFactory` returns (it may inject what `imports` provide).
   *
   * ```ts
   * OrmlockModule.forRootAsync({
   *   imports: [ConfigModule],
   *   inject: [ConfigService],
   *   useFactory: (config: ConfigService) => ({ namespace: config.get('APP'), redis: { nodes: [config.get('REDIS_URL')] } }),
   * })
   * ```
   */
  static forRootAsync(options: OrmlockModuleAsyncOptions): DynamicModule {
    if (!options || typeof options.useFactory !== 'function') {
      throw badOption('OrmlockModule.forRootAsync', 'useFactory', 'a function returning the options (or a Promise of them)', options?.useFactory);
    }
    if (options.inject !== undefined && !Array.isArray(options.inject)) {
      throw badOption('OrmlockModule.forRootAsync', 'inject', 'an array of the tokens useFactory receives', options.inject);
    }
    return build(
      'forRootAsync',
      [...(options.imports ?? [])],
      { provide: ORMLOCK_MODULE_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] },
      asyncWaitTokens(options),
      options.extraProviders ?? [],
    );
  }

  /** Installs what could not be installed while the providers were created (names only the async factory knew). */
  async onModuleInit(): Promise<void> {
    await this.installations.installPending(lookupIn(this.moduleRef));
  }

  /** `app.close()`: uninstalls (the DataSources may be destroyed before or after), then quits the Redis clients it made. */
  async onApplicationShutdown(): Promise<void> {
    try {
      await this.installations.close();
    } finally {
      await this.redis.close();
    }
  }
}

/**
 * The tokens the installing provider waits for in forRootAsync: those its hints name, or the
 * default DataSource when `@nestjs/typeorm` is there (optional: an app without it installs later).
 */
function asyncWaitTokens(options: OrmlockModuleAsyncOptions): Array<string | Function> {
  if (options.dataSources === undefined && options.mikroOrm === undefined) {
    try {
      return [tokenOf({ kind: 'typeorm', name: 'default', options: {} })];
    } catch {
      return [];
    }
  }
  return installTargets({ dataSources: options.dataSources, mikroOrm: options.mikroOrm }, 'forRootAsync').map(tokenOf);
}

function lookupIn(moduleRef: ModuleRef): ProviderLookup {
  return (token) => {
    try {
      return moduleRef.get(token as string, { strict: false });
    } catch {
      return undefined;
    }
  };
}

function build(
  caller: string,
  imports: NonNullable<DynamicModule['imports']>,
  optionsProvider: Provider,
  waitFor: Array<string | Function>,
  extraProviders: NonNullable<DynamicModule['providers']> = [],
): DynamicModule {
  const installations: Provider = {
    provide: OrmlockInstallations,
    // Waiting for the ORM providers here (not in a lifecycle hook) installs before any hook runs.
    inject: [ORMLOCK_MODULE_OPTIONS, ...waitFor.map((token) => ({ token, optional: true }))],
    useFactory: async (options: OrmlockModuleOptions, ...instances: unknown[]) => {
      const targets: InstallTarget[] = installTargets(options, caller);
      const injected = new Map(waitFor.map((token, i) => [token, instances[i]] as const));
      const made = new OrmlockInstallations();
      await made.install(targets, (token) => injected.get(token), true);
      return made;
    },
  };
  return {
    module: OrmlockModule,
    global: true,
    imports,
    providers: [
      ...extraProviders,
      optionsProvider,
      installations,
      { provide: OrmlockRedis, inject: [ORMLOCK_MODULE_OPTIONS], useFactory: (options: OrmlockModuleOptions) => OrmlockRedis.from(options) },
      { provide: ORMLOCK_REDLOCK, inject: [OrmlockRedis], useFactory: (redis: OrmlockRedis) => redis.redlock },
      { provide: Redlock, useExisting: ORMLOCK_REDLOCK },
    ],
    exports: [OrmlockInstallations, ORMLOCK_REDLOCK, Redlock],
  };
}
