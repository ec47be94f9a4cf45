/**
 * ormlock/nestjs: `OrmlockModule.forRoot/forRootAsync` installs ormlock on the DataSources of
 * `@nestjs/typeorm` and/or the MikroORM instance of `@mikro-orm/nestjs`; `@InjectRedlock()`
 * injects the Redlock it builds from `redis: { nodes }`. The decorators themselves come from
 * 'ormlock' and work on providers as they do anywhere.
 */
export { OrmlockModule } from './ormlock.module';
export { InjectRedlock } from './inject-redlock';
export { OrmlockInstallations, type OrmlockModuleInstallation, type OrmlockHandle } from './installations';
export { ORMLOCK_MODULE_OPTIONS, ORMLOCK_REDLOCK } from './tokens';
export type {
  OrmlockModuleOptions,
  OrmlockModuleAsyncOptions,
  OrmlockDataSourceEntry,
  OrmlockRedisOptions,
  OrmlockRedisNode,
  OrmlockMikroOrmOptions,
} from './options';
export { OrmlockExceptionFilter, ormlockHttpStatus, ORMLOCK_EXCEPTION_FILTER_OPTIONS, type OrmlockExceptionFilterOptions } from './exception-filter';
