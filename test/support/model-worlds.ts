/**
 * The worlds the generated programs of test/support/model-program.ts run in: a TypeORM DataSource
 * (its nested transaction: `manager.transaction`, a savepoint; its own scope: a user's QueryRunner
 * with `startTransaction()`, named as `{ dataSource }`) and a MikroORM instance (nested:
 * `em.transactional`, a savepoint; its own scopes: `em.fork().transactional()` and a fork's
 * `em.begin()` / `commit()` / `rollback()`, the fork named as `{ dataSource }`).
 */
import type { EntityManager } from '@mikro-orm/core';
import type { QueryRunner } from 'typeorm';
import { LockNotAvailableError, currentManager, lock, transaction } from '../../src';
import { ambientConnection } from '../../src/context/store';
import { resolveInstallation } from '../../src/installations';
import { connectionFor } from '../../src/orm/mikro-orm/connection';
import { EdgeAccount } from '../fixtures/edges';
import { MkLcRow } from '../fixtures/lost-connection';
import type { MikroEnv } from './mikro-suite';
import { outside, type World } from './model-program';
import type { SuiteEnv } from './suite';

const isQueryRunner = (x: object): x is QueryRunner => typeof (x as QueryRunner).startTransaction === 'function' && 'manager' in x;

/** True when `run` rejects with LockNotAvailableError (the row is locked), false when it resolves. */
const lockedBy = (run: () => Promise<unknown>): Promise<boolean> =>
  run().then(
    () => false,
    (e) => {
      if (e instanceof LockNotAvailableError) return true;
      throw e;
    },
  );

/** The world of a TypeORM suite (its DataSource has the edge entities): one row to lock, probed from another connection with NOWAIT. */
export async function typeormWorld(env: SuiteEnv): Promise<World> {
  const ds = env.ds;
  const repo = ds.getRepository(EdgeAccount);
  const row = await repo.save(repo.create({ name: 'model-row', credits: 1 }));
  const probe = repo.create({ id: row.id, name: row.name, credits: row.credits });
  return {
    orm: 'typeorm',
    target: ds,
    dialect: env.handle.dialect,
    backend: env.name,
    row,
    rowLockedElsewhere: () =>
      outside(() => lockedBy(() => transaction(() => lock(probe, { dataSource: ds, onLocked: 'nowait' }), { dataSource: ds, propagation: 'requires_new' }))),
    connectionHere: (target) => (isQueryRunner(target) ? target : currentManager(target).queryRunner),
    nested: (target, body) => (isQueryRunner(target) ? target.manager : currentManager(target)).transaction(() => body()),
    scopes: {
      // a user's own QueryRunner: startTransaction / commitTransaction / rollbackTransaction, named as { dataSource }
      runner: {
        weight: 1,
        transactional: true,
        async open(body) {
          const qr = ds.createQueryRunner();
          await qr.connect();
          try {
            await qr.startTransaction();
            try {
              await body(qr, qr);
            } catch (error) {
              if (qr.isTransactionActive) await qr.rollbackTransaction();
              throw error;
            }
            await qr.commitTransaction();
          } finally {
            await qr.release();
          }
        },
      },
    },
    queryOutside: (sql, params) => ds.query(sql, params),
    write: async (target, note) => {
      await (isQueryRunner(target) ? target.manager : currentManager(target)).insert(EdgeAccount, { name: note, credits: 0 });
    },
    count: (note) => repo.countBy({ name: note }),
  };
}

const isEntityManager = (x: object): x is EntityManager =>
  typeof (x as EntityManager).transactional === 'function' && typeof (x as EntityManager).fork === 'function';

/** The world of a MikroORM suite (with MkLcRow): one row to lock, probed from another connection with NOWAIT. */
export async function mikroWorld(env: MikroEnv): Promise<World> {
  const orm = env.orm;
  const seeding = orm.em.fork();
  const row = seeding.create(MkLcRow, { note: 'model-row' });
  await seeding.flush();
  const id = row.id;
  const managerOf = (target: object) => (isEntityManager(target) && target.getTransactionContext() ? target : (currentManager(target) as EntityManager));
  return {
    orm: 'mikro-orm',
    target: orm,
    dialect: env.handle.dialect,
    backend: env.name,
    row,
    rowLockedElsewhere: () =>
      outside(async () => {
        const probe = await orm.em.fork().findOneOrFail(MkLcRow, id);
        return lockedBy(() => transaction(() => lock(probe, { dataSource: orm, onLocked: 'nowait' }), { dataSource: orm, propagation: 'requires_new' }));
      }),
    connectionHere: (target) => {
      if (isEntityManager(target) && target.getTransactionContext()) return connectionFor(target, target.getTransactionContext()!);
      return ambientConnection(resolveInstallation('model', { explicit: target }));
    },
    // a fork named as { dataSource } (em.begin): its nested transaction's em is named inside (the fork's transactional() again would wait for it in knex)
    nested: (target, body) => managerOf(target).transactional((em) => body(isEntityManager(target) ? em : undefined)),
    scopes: {
      // MikroORM's own transaction on a fork of the global EntityManager
      emtx: {
        weight: 1,
        transactional: true,
        open: (body) => orm.em.fork().transactional(async (em) => body(orm, connectionFor(em, em.getTransactionContext()!))),
      },
      // em.begin() / commit() / rollback() on a fork, the fork named as { dataSource }
      begin: {
        weight: 1,
        transactional: true,
        async open(body) {
          const fork = orm.em.fork();
          await fork.begin();
          try {
            await body(fork, connectionFor(fork, fork.getTransactionContext()!));
          } catch (error) {
            await fork.rollback();
            throw error;
          }
          await fork.commit();
        },
      },
    },
    queryOutside: (sql, params) => orm.em.getConnection().execute(sql.replace(/\$\d+/g, '?'), params ?? [], 'all'),
    write: async (target, note) => {
      const em = managerOf(target);
      await em.insert(MkLcRow, { note });
    },
    count: (note) => orm.em.fork().count(MkLcRow, { note }),
  };
}
