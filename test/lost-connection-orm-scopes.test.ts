/**
 * The ORM's own transaction scopes on a killed connection. `dataSource.transaction(cb)` and
 * MikroORM's `em.transactional(cb)` reject with LockLostError (the driver's error as `cause`)
 * when ormlock held a lock taken inside them — a `lock(row)`, or a transaction-scope advisory lock
 * whose call already returned — and nothing of them commits. The control: the same scope without
 * an ormlock lock rejects with the ORM's own error, as without ormlock. A killed connection is
 * destroyed without an ORMLOCK_CONNECTION_DISCARDED warning (the loss was reported already).
 */
import type { EntityManager as MikroEntityManager } from '@mikro-orm/core';
import { expect } from 'chai';
import type { EntityManager } from 'typeorm';
import { lock, LockLostError, withAdvisoryLock } from '../src';
import { LcRow, MkLcRow } from './fixtures/lost-connection';
import type { BackendName } from './support/backends';
import { connectionIdOn, killConnection } from './support/kill-connection';
import { describeEachMikroBackend } from './support/mikro-suite';
import { describeEachBackend } from './support/suite';

/** Runs `fn` while collecting the process warnings with code ORMLOCK_CONNECTION_DISCARDED. */
async function discardWarnings<T>(fn: () => Promise<T>): Promise<{ result: T; warnings: string[] }> {
  const warnings: string[] = [];
  const listener = (w: Error & { code?: string }) => {
    if (w.code === 'ORMLOCK_CONNECTION_DISCARDED') warnings.push(w.message);
  };
  process.on('warning', listener);
  try {
    const result = await fn();
    await new Promise((r) => setTimeout(r, 50)); // warnings are emitted on the next tick
    return { result, warnings };
  } finally {
    process.off('warning', listener);
  }
}

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e) => e,
  );

/** What the body holds before its connection is killed. */
type Holding = 'a row lock (lock())' | 'a returned transaction-scope advisory lock' | 'no ormlock lock (control)';
const HOLDINGS: Holding[] = ['a row lock (lock())', 'a returned transaction-scope advisory lock', 'no ormlock lock (control)'];

interface OwnScope {
  name: BackendName;
  /** The ORM's own transaction around `body`, which gets the id of the scope's connection and an insert. */
  run(body: (connectionId: () => Promise<number>, insert: (note: string) => Promise<void>) => Promise<void>): Promise<unknown>;
  /** A row to lock, loaded inside the scope. */
  target(): Promise<object>;
  count(note: string): Promise<number>;
}

function scenarios(scope: () => OwnScope) {
  for (const holding of HOLDINGS) {
    it(`killed while holding ${holding}`, async () => {
      const s = scope();
      const note = `own-${process.pid}-${HOLDINGS.indexOf(holding)}-${Date.now()}`;
      const { result: error, warnings } = await discardWarnings(() =>
        rejection(
          s.run(async (connectionId, insert) => {
            if (holding === 'a row lock (lock())') await lock(await s.target());
            if (holding === 'a returned transaction-scope advisory lock') await withAdvisoryLock(`own-scope-${process.pid}`, async () => undefined);
            await insert(note);
            await killConnection(s.name, await connectionId());
            await new Promise((r) => setTimeout(r, 200)); // the driver sees the socket close
            await insert(`${note}-after`);
          }),
        ),
      );
      expect(error, 'the scope rejects').to.be.instanceOf(Error);
      if (holding === 'no ormlock lock (control)') {
        expect(error, "without an ormlock lock: the ORM's own error").to.not.be.instanceOf(LockLostError);
      } else {
        expect(error, 'the lock was lost with the connection').to.be.instanceOf(LockLostError);
        expect(error.message).to.match(/connection/);
        expect(error.cause, "the driver's error is kept").to.be.instanceOf(Error);
      }
      expect(await s.count(note), 'nothing of the scope committed').to.equal(0);
      expect(await s.count(`${note}-after`)).to.equal(0);
      expect(warnings, 'a killed connection is destroyed without a warning').to.deep.equal([]);
    });
  }
}

describeEachBackend("the ORM's own transaction on a killed connection (TypeORM dataSource.transaction)", [LcRow], (env) => {
  let id: number;
  before(async () => {
    id = (await env.ds.getRepository(LcRow).save({ note: 'own-target' })).id;
  });
  scenarios(() => ({
    name: env.name,
    run: (body) =>
      env.ds.transaction((em: EntityManager) =>
        body(
          () => connectionIdOn(env.name, (sql) => em.query(sql)),
          async (note) => void (await em.getRepository(LcRow).insert({ note })),
        ),
      ),
    target: () => env.ds.getRepository(LcRow).findOneByOrFail({ id }),
    count: (note) => env.ds.getRepository(LcRow).countBy({ note }),
  }));
});

describeEachMikroBackend("the ORM's own transaction on a killed connection (MikroORM em.transactional)", [MkLcRow], (env) => {
  let id: number;
  before(async () => {
    const fork = env.orm.em.fork();
    const row = fork.create(MkLcRow, { note: 'own-target' });
    await fork.flush();
    id = row.id;
  });
  scenarios(() => ({
    name: env.name,
    run: (body) =>
      env.orm.em.fork().transactional((em: MikroEntityManager) =>
        body(
          () => connectionIdOn(env.name, (sql) => em.getConnection().execute(sql, [], 'all', em.getTransactionContext())),
          async (note) => void (await em.insert(MkLcRow, { note })),
        ),
      ),
    target: () => env.orm.em.fork().findOneOrFail(MkLcRow, id),
    count: (note) => env.orm.em.fork().count(MkLcRow, { note }),
  }));
});
