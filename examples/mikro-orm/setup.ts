/**
 * The demo's MikroORM side (`npm run demo -- --orm mikro-orm`): a MikroORM instance on the demo's
 * database with the examples' entities, its schema created, ormlock installed from ormlock/mikro-orm;
 * and the scenarios that run on it (the MikroORM ones here, plus the ORM-independent S3Worker and
 * Redlock ones of examples/scenarios).
 */
import { MikroORM, type Options } from '@mikro-orm/core';
import { installLocking } from '../../src/orm/mikro-orm';
import type { Scenario } from '../scenario';
import { entities, NestedSetSubscriber } from './schema';

export async function openMikroOrm(dbUrl: string): Promise<{ orm: MikroORM; close: () => Promise<void> }> {
  const postgres = /^postgres/.test(dbUrl);
  const driver = postgres ? (await import('@mikro-orm/postgresql')).PostgreSqlDriver : (await import('@mikro-orm/mariadb')).MariaDbDriver;
  const orm = await MikroORM.init({
    driver: driver as never,
    clientUrl: dbUrl,
    dbName: new URL(dbUrl).pathname.slice(1),
    entities,
    subscribers: [new NestedSetSubscriber()],
    pool: { min: 0, max: 40 },
    allowGlobalContext: false,
  } as Options);
  await orm.schema.createSchema();
  const handle = await installLocking(orm, { namespace: 'ormlock-demo' });
  return {
    orm,
    close: async () => {
      handle.uninstall();
      await orm.close(true);
    },
  };
}

/** The scenarios of the MikroORM run (each `run(orm, …)`), in table order. */
export function mikroOrmScenarios(only?: string[]): Scenario[] {
  const list: Scenario[] = [
    require('./scenarios/nested-set').scenario,
    require('./scenarios/charge-user-for-order').scenario,
    require('../scenarios/s3-worker').scenario, // ORM-independent: its lock resolves to the only installation
    require('./scenarios/optimistic-counter').scenario,
    require('../scenarios/redlock').scenario,
  ];
  const picked = only?.length ? list.filter((s) => only.some((o) => s.name.includes(o))) : list;
  return picked.sort((a, b) => (a.order ?? Infinity) - (b.order ?? Infinity) || a.name.localeCompare(b.name));
}
