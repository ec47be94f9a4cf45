/**
 * The optional peers of `ormlock/nestjs`, loaded only when the options ask for them, so that an
 * application without TypeORM, MikroORM or Redis never needs their packages.
 */
import type { OrmlockHandle } from './handle';
import type { LockingHandle } from '../orm/typeorm/public-types';
import { mikroOrmNestTooOld } from '../faults/nestjs';
import { missingPackage } from '../faults/options';

function load<T>(id: string, why: string, pkg = id): T {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require(id) as T;
  } catch (error) {
    if ((error as { code?: string })?.code === 'MODULE_NOT_FOUND' && String((error as Error).message).includes(`'${pkg}'`)) {
      throw missingPackage(`OrmlockModule: ${why}`, pkg);
    }
    throw error;
  }
}

/** `@nestjs/typeorm`'s token of a DataSource provider. */
export function dataSourceToken(name: string): string | Function {
  const nest = load<{ getDataSourceToken(name?: string): string | Function }>('@nestjs/typeorm', `installing on TypeORM DataSource '${name}'`);
  return nest.getDataSourceToken(name);
}

/** `@mikro-orm/nestjs`'s token of the MikroORM instance (the `MikroORM` class, or `<contextName>_MikroORM`). */
export function mikroOrmToken(contextName?: string): string | Function {
  const nest = load<{ getMikroORMToken?(name: string): string }>('@mikro-orm/nestjs', 'mikroOrm: true');
  if (contextName !== undefined) {
    if (typeof nest.getMikroORMToken !== 'function') {
      throw mikroOrmNestTooOld();
    }
    return nest.getMikroORMToken(contextName);
  }
  return load<{ MikroORM: Function }>('@mikro-orm/core', 'mikroOrm: true').MikroORM;
}

export interface MikroOrmAdapter {
  installLocking(orm: unknown, options?: object): Promise<OrmlockHandle>;
}

/** ormlock's MikroORM adapter (`ormlock/mikro-orm`), loaded at the first `mikroOrm: true`. */
export function mikroOrmAdapter(): MikroOrmAdapter {
  return load<MikroOrmAdapter>('../orm/mikro-orm', 'mikroOrm: true');
}

export interface TypeOrmAdapter {
  installLocking(dataSource: unknown, options?: object): Promise<LockingHandle>;
}

/** ormlock's TypeORM adapter, loaded at the first DataSource to install on (a MikroORM-only application never loads typeorm). */
export function typeOrmAdapter(): TypeOrmAdapter {
  return load<TypeOrmAdapter>('../orm/typeorm/install', 'installing on a TypeORM DataSource', 'typeorm');
}

export interface IoRedisModule {
  new (...args: any[]): any;
  default?: new (...args: any[]) => any;
}

/** The ioredis client class, for `redis: { nodes }` given as URLs or options. */
export function ioredis(): new (arg: unknown) => any {
  const mod = load<IoRedisModule>('ioredis', 'redis: { nodes } given as URLs or options');
  return (mod.default ?? mod) as new (arg: unknown) => any;
}
