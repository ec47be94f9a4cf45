import { expect } from 'chai';
import { DeleteQueryBuilder, EntityManager, InsertQueryBuilder, Repository, SelectQueryBuilder, UpdateQueryBuilder, type DataSource } from 'typeorm';
import { SubjectExecutor } from 'typeorm/persistence/SubjectExecutor';
import { currentManager, installLocking, LockConfigError, transaction, type LockingHandle } from '../src';
import { installationOf } from '../src/installations';
import { typeormVersion } from '../src/orm/typeorm/compat';
import { patchedInternals } from '../src/orm/typeorm/internals';
import { race } from '../src/testing';
import { BillJob, BillOrder, BillUser, Billing } from './fixtures/billing';
import { TWO_ENTITIES } from './fixtures/two-sources';
import { BACKENDS, createDataSource, dataSourceOptions } from './support/backends';
import { DataSource as TypeOrmDataSource } from 'typeorm';

/**
 * The TypeORM adapter's lifecycle: repositories obtained before installLocking run on
 * the ambient transaction, and every patch of TypeORM internals is probed first (a reshaped
 * internal → LockConfigError naming it and the version, nothing installed) and undone by the last
 * uninstall().
 */

const N = 20;

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<any> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, but the call succeeded');
}

for (const name of BACKENDS) {
  describe(`TypeORM internals [${name}]: repositories obtained before installLocking`, function () {
    let ds: DataSource;
    let handle: LockingHandle;
    let users: Repository<BillUser>;
    let orders: Repository<BillOrder>;
    let managerBefore: EntityManager;

    before(async function () {
      const created = await createDataSource(name, [BillUser, BillOrder, BillJob], { poolSize: 24 });
      if (!created) return this.skip();
      ds = created;
      users = ds.getRepository(BillUser); // before installLocking, as Nest does
      orders = ds.getRepository(BillOrder);
      managerBefore = ds.manager;
      handle = await installLocking(ds);
    });

    after(async () => {
      handle?.uninstall();
      if (ds?.isInitialized) await ds.destroy();
    });

    const idOf = async (run: (sql: string) => Promise<any>) => String((await run(handle.dialect.connectionIdSql))[0].connectionId);

    it('TypeORM hands out the same (cached) repository after installLocking', () => {
      expect(ds.getRepository(BillUser)).to.equal(users);
    });

    it("inside transaction() it runs on the transaction's connection (same connection id as the transaction's manager)", async () => {
      await transaction(async () => {
        const viaTx = await idOf((sql) => currentManager().query(sql));
        const viaRepo = await idOf((sql) => users.query(sql));
        const viaOrders = await idOf((sql) => orders.query(sql));
        const viaDataSource = await idOf((sql) => ds.manager.query(sql));
        expect({ viaRepo, viaOrders, viaDataSource }).to.deep.equal({ viaRepo: viaTx, viaOrders: viaTx, viaDataSource: viaTx });
        expect(users.manager).to.equal(currentManager());
        // the comparison can fail: a connection of its own has another id
        const qr = ds.createQueryRunner();
        try {
          expect(await idOf((sql) => qr.query(sql))).to.not.equal(viaTx);
        } finally {
          await qr.release();
        }
      });
      // and outside, its own manager again
      expect(users.manager).to.not.equal(undefined);
      expect(users.manager.queryRunner).to.equal(undefined);
    });

    it("a manager obtained before installLocking (ds.manager, as @InjectEntityManager gives it) runs on the transaction's connection", async () => {
      await transaction(async () => {
        const viaTx = await idOf((sql) => currentManager().query(sql));
        expect(await idOf((sql) => managerBefore.query(sql))).to.equal(viaTx);
      });
    });

    for (const write of ['insert', 'update', 'save (new row)', 'save (loaded row)', 'remove'] as const) {
      it(`a manager obtained before installLocking: its ${write} inside transaction() is rolled back with it`, async () => {
        const user = await users.save(users.create({ name: 'kept', credits: 3 }));
        const marker = `escaped ${write}`;
        await rejection(
          transaction(async () => {
            if (write === 'insert') await managerBefore.insert(BillUser, { name: marker, credits: 6 });
            if (write === 'update') await managerBefore.update(BillUser, { id: user.id }, { credits: 4 });
            if (write === 'save (new row)') await managerBefore.save(managerBefore.create(BillUser, { name: marker, credits: 6 }));
            if (write === 'save (loaded row)') {
              const loaded = await managerBefore.findOneByOrFail(BillUser, { id: user.id });
              loaded.credits = 5;
              await managerBefore.save(loaded);
            }
            if (write === 'remove') await managerBefore.remove(await managerBefore.findOneByOrFail(BillUser, { id: user.id }));
            throw new Error('roll back');
          }),
        );
        expect(await users.countBy({ name: marker }), 'an inserted row survived the rollback').to.equal(0);
        expect((await users.findOneBy({ id: user.id }))?.credits, 'the row was changed despite the rollback').to.equal(3);
      });
    }

    it('its writes (insert, update, save, remove) inside a transaction that rolls back are rolled back', async () => {
      const kept = await users.save(users.create({ name: 'kept', credits: 7 }));
      const removed = await users.save(users.create({ name: 'kept', credits: 7 }));
      await rejection(
        transaction(async () => {
          await users.insert({ name: 'escaped via repo', credits: 1 });
          await users.save(users.create({ name: 'escaped via repo', credits: 2 }));
          await users.update({ id: kept.id }, { credits: 8 });
          const loaded = await users.findOneByOrFail({ id: kept.id });
          loaded.credits = 9;
          await users.save(loaded);
          await users.remove(await users.findOneByOrFail({ id: removed.id }));
          throw new Error('roll back');
        }),
      );
      expect(await users.countBy({ name: 'escaped via repo' })).to.equal(0);
      expect((await users.findOneByOrFail({ id: kept.id })).credits).to.equal(7);
      expect(await users.countBy({ id: removed.id })).to.equal(1);
    });

    async function runCharges(method: 'chargeUnlocked' | 'chargePessimistic') {
      const user = await users.save(users.create({ credits: 1000 }));
      const orderIds: number[] = [];
      for (let i = 0; i < N; i++) orderIds.push((await orders.save(orders.create({ userId: user.id, price: 10 }))).id);
      const billing = new Billing(users, orders); // the repositories obtained before installLocking
      const results = await race(N, (i) => billing[method](user.id, orderIds[i]));
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
      return { credits: (await users.findOneByOrFail({ id: user.id })).credits, failures };
    }

    it(`control: ${N} concurrent charges through it without a lock lose updates`, async () => {
      const { credits, failures } = await runCharges('chargeUnlocked');
      expect(failures).to.deep.equal([]);
      expect(credits, 'lost updates expected without locking').to.be.greaterThan(1000 - N * 10);
    });

    it(`@Pessimistic() through it: ${N} concurrent charges are exact (no self-deadlock)`, async () => {
      const { credits, failures } = await runCharges('chargePessimistic');
      expect(failures).to.deep.equal([]);
      expect(credits).to.equal(1000 - N * 10);
    });
  });
}

/** Own property descriptors of everything ormlock may patch, to compare after the last uninstall(). */
const PROTOTYPES: Record<string, object> = {
  'SelectQueryBuilder.prototype': SelectQueryBuilder.prototype,
  'InsertQueryBuilder.prototype': InsertQueryBuilder.prototype,
  'UpdateQueryBuilder.prototype': UpdateQueryBuilder.prototype,
  'DeleteQueryBuilder.prototype': DeleteQueryBuilder.prototype,
  'SubjectExecutor.prototype': SubjectExecutor.prototype,
  'EntityManager.prototype': EntityManager.prototype,
  'Repository.prototype': Repository.prototype,
};

type Snapshot = Record<string, Record<string | symbol, PropertyDescriptor>>;

function snapshot(targets: Record<string, object>): Snapshot {
  const out: Snapshot = {};
  for (const [label, target] of Object.entries(targets)) {
    out[label] = {};
    for (const key of Reflect.ownKeys(target)) out[label][key] = Object.getOwnPropertyDescriptor(target, key)!;
  }
  return out;
}

/** The keys whose own descriptor differs between two snapshots (added, removed or replaced). */
function differences(before: Snapshot, after: Snapshot): string[] {
  const diff: string[] = [];
  for (const label of Object.keys(before)) {
    const keys = new Set([...Reflect.ownKeys(before[label]), ...Reflect.ownKeys(after[label] ?? {})]);
    for (const key of keys) {
      const x = before[label][key];
      const y = after[label]?.[key];
      const same = x && y && x.value === y.value && x.get === y.get && x.set === y.set && x.writable === y.writable && x.enumerable === y.enumerable;
      if (!same) diff.push(`${label}.${String(key)}`);
    }
  }
  return diff;
}

/** Sets `owner[key]` to `value`; returns the undo (the original descriptor, or none). */
function swap(owner: object, key: string, value: unknown): () => void {
  const own = Object.getOwnPropertyDescriptor(owner, key);
  Object.defineProperty(owner, key, { configurable: true, writable: true, value });
  return () => {
    if (own) Object.defineProperty(owner, key, own);
    else delete (owner as Record<string, unknown>)[key];
  };
}

/** A reshaped method: the same name, but its source no longer mentions what ormlock relies on. */
function reshapedFunction() {
  return function reshaped(this: unknown) {
    return '';
  };
}

interface Reshape {
  /** How the probe names it. */
  label: string;
  owner: object;
  method: string;
}

const RESHAPES: Reshape[] = [
  { label: 'SelectQueryBuilder.prototype.createLockExpression', owner: SelectQueryBuilder.prototype, method: 'createLockExpression' },
  { label: 'SelectQueryBuilder.prototype.executeEntitiesAndRawResults', owner: SelectQueryBuilder.prototype, method: 'executeEntitiesAndRawResults' },
  { label: 'EntityManager.prototype.transaction', owner: EntityManager.prototype, method: 'transaction' },
  { label: 'SubjectExecutor.prototype.execute', owner: SubjectExecutor.prototype, method: 'execute' },
  { label: 'InsertQueryBuilder.prototype.execute', owner: InsertQueryBuilder.prototype, method: 'execute' },
  { label: 'UpdateQueryBuilder.prototype.execute', owner: UpdateQueryBuilder.prototype, method: 'execute' },
  { label: 'SubjectExecutor.prototype.executeUpdateOperations', owner: SubjectExecutor.prototype, method: 'executeUpdateOperations' },
];

for (const name of BACKENDS) {
  describe(`TypeORM internals [${name}]: probes and the last uninstall()`, function () {
    let ds: DataSource;
    let original: Snapshot;
    let dsOriginal: Snapshot;

    before(async function () {
      expect(patchedInternals(), 'these tests need no installation alive in the process').to.deep.equal([]);
      original = snapshot(PROTOTYPES);
      const created = await createDataSource(name, TWO_ENTITIES, { poolSize: 4 }); // decorated entities: every patch is needed
      if (!created) return this.skip();
      ds = created;
      dsOriginal = snapshot({ dataSource: ds });
    });

    after(async () => {
      if (ds?.isInitialized) await ds.destroy();
    });

    afterEach(() => {
      // whatever a test did, TypeORM's prototypes must hold the originals again
      expect(patchedInternals()).to.deep.equal([]);
      expect(differences(original, snapshot(PROTOTYPES))).to.deep.equal([]);
    });

    /** Checks that `ds` carries no trace of an installation. */
    async function expectNothingInstalled(subscribersBefore: number) {
      expect(patchedInternals()).to.deep.equal([]);
      expect(installationOf(ds)).to.equal(undefined);
      expect(ds.subscribers.length).to.equal(subscribersBefore);
      expect(differences(dsOriginal, snapshot({ dataSource: ds })), 'the DataSource is as it was').to.deep.equal([]);
      const err = await rejection(transaction(async () => 'ran', { dataSource: ds }));
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.include('not installed');
    }

    for (const variant of ['replaced', 'deleted'] as const) {
      for (const reshape of variant === 'deleted' ? RESHAPES.slice(0, 1) : RESHAPES) {
        it(`${reshape.label} ${variant} → installLocking throws LockConfigError naming it and TypeORM ${typeormVersion()}, installs nothing; restored, it installs`, async () => {
          const target = reshape.owner as Record<string, unknown>;
          const base = target[reshape.method];
          const descriptor = Object.getOwnPropertyDescriptor(target, reshape.method)!;
          const subscribersBefore = ds.subscribers.length;
          if (variant === 'replaced') target[reshape.method] = reshapedFunction();
          else delete target[reshape.method];
          let err: any;
          try {
            err = await rejection(installLocking(ds));
          } finally {
            Object.defineProperty(target, reshape.method, descriptor);
          }
          expect(err).to.be.instanceOf(LockConfigError);
          expect(err.message).to.include(reshape.label);
          expect(err.message).to.include(`TypeORM ${typeormVersion()}`);
          expect(err.message).to.include('Nothing was installed');
          expect(err.details.typeormVersion).to.equal(typeormVersion());
          await expectNothingInstalled(subscribersBefore);

          // the original back in place: installLocking works, and uninstall() undoes it
          const handle = await installLocking(ds);
          expect(patchedInternals()).to.not.deep.equal([]);
          expect(target[reshape.method], 'patched while installed').to.not.equal(base);
          handle.uninstall();
          expect(differences(dsOriginal, snapshot({ dataSource: ds }))).to.deep.equal([]);
        });
      }
    }

    it('two reshaped internals at once → one LockConfigError naming both', async () => {
      const sqb = SelectQueryBuilder.prototype as any;
      const em = EntityManager.prototype as any;
      const [lockExpr, tx] = [sqb.createLockExpression, em.transaction];
      sqb.createLockExpression = reshapedFunction();
      em.transaction = reshapedFunction();
      let err: any;
      try {
        err = await rejection(installLocking(ds));
      } finally {
        sqb.createLockExpression = lockExpr;
        em.transaction = tx;
      }
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.include('SelectQueryBuilder.prototype.createLockExpression').and.include('EntityManager.prototype.transaction');
      expect(err.details.internals).to.include.members(['SelectQueryBuilder.prototype.createLockExpression', 'EntityManager.prototype.transaction']);
      await expectNothingInstalled(ds.subscribers.length);
    });

    /** The DataSource's binding to the context (bind-data-source.ts) is probed like the prototypes' patches. */
    const BINDING: Array<{ label: string; reshape(): () => void }> = [
      { label: 'DataSource.prototype.query', reshape: () => swap(TypeOrmDataSource.prototype, 'query', reshapedFunction()) },
      { label: 'DataSource.prototype.createQueryBuilder', reshape: () => swap(TypeOrmDataSource.prototype, 'createQueryBuilder', reshapedFunction()) },
      { label: 'EntityManager.prototype.save', reshape: () => swap(EntityManager.prototype, 'save', reshapedFunction()) },
      {
        label: 'DataSource.manager',
        reshape: () => {
          const own = Object.getOwnPropertyDescriptor(ds, 'manager')!;
          Object.defineProperty(ds, 'manager', { configurable: true, get: () => own.value }); // an accessor, not the manager itself
          return () => Object.defineProperty(ds, 'manager', own);
        },
      },
    ];
    for (const { label, reshape } of BINDING) {
      it(`the DataSource binding's probe: ${label} reshaped → installLocking throws LockConfigError naming it, binds and installs nothing; restored, it installs`, async () => {
        const subscribersBefore = ds.subscribers.length;
        const undo = reshape();
        let err: any;
        try {
          err = await rejection(installLocking(ds));
        } finally {
          undo();
        }
        expect(err).to.be.instanceOf(LockConfigError);
        expect(err.message).to.include(label).and.include(`TypeORM ${typeormVersion()}`).and.include('Nothing was installed');
        expect(err.details.internals).to.deep.equal([label]);
        await expectNothingInstalled(subscribersBefore);
        const handle = await installLocking(ds);
        expect(Object.getOwnPropertyDescriptor(ds, 'manager')?.get, 'bound while installed').to.be.a('function');
        handle.uninstall();
        expect(differences(dsOriginal, snapshot({ dataSource: ds }))).to.deep.equal([]);
      });
    }

    it("a second installation reuses the applied patches, and its uninstall() leaves the first's working", async () => {
      const handle = await installLocking(ds);
      const patched = patchedInternals();
      const options = await dataSourceOptions(name, TWO_ENTITIES, { fresh: false, poolSize: 4 });
      const other = await new TypeOrmDataSource(options!).initialize();
      try {
        const sqb = SelectQueryBuilder.prototype as any;
        expect(sqb.createLockExpression).to.not.equal(original['SelectQueryBuilder.prototype'].createLockExpression.value);
        const second = await installLocking(other);
        second.uninstall();
        expect(patchedInternals()).to.deep.equal(patched);
        expect(installationOf(ds)).to.equal(handle.installation);
        await transaction(async () => expect(currentManager().queryRunner?.isTransactionActive).to.equal(true), { dataSource: ds });
      } finally {
        handle.uninstall();
        await other.destroy();
      }
    });

    it("after the last uninstall() patchedInternals() is empty and TypeORM's prototypes hold the originals (also with two installations)", async () => {
      const options = await dataSourceOptions(name, TWO_ENTITIES, { fresh: false, poolSize: 4 });
      const other = await new TypeOrmDataSource(options!).initialize();
      const otherOriginal = snapshot({ dataSource: other });
      try {
        const before = ds.getRepository(TWO_ENTITIES[0]); // obtained before installLocking
        const h1 = await installLocking(ds);
        const h2 = await installLocking(other);
        const during = other.getRepository(TWO_ENTITIES[0]); // obtained while installed
        const patched = patchedInternals();
        expect(patched).to.include.members([
          'SelectQueryBuilder.prototype.createLockExpression',
          'SelectQueryBuilder.prototype.executeEntitiesAndRawResults',
          'Repository.prototype.manager',
          'EntityManager.prototype.transaction',
          'SubjectExecutor.prototype.execute',
          'InsertQueryBuilder.prototype.execute',
        ]);
        h1.uninstall();
        expect(patchedInternals(), 'another installation still uses them').to.deep.equal(patched);
        expect(differences(original, snapshot(PROTOTYPES))).to.not.deep.equal([]);
        h1.uninstall(); // twice: no effect on the count
        expect(patchedInternals()).to.deep.equal(patched);
        await other.destroy(); // the last one, uninstalled by destroy()
        expect(h2.installation.port.isLive).to.equal(false);
        expect(patchedInternals()).to.deep.equal([]);
        expect(differences(original, snapshot(PROTOTYPES))).to.deep.equal([]);
        expect(differences(dsOriginal, snapshot({ dataSource: ds }))).to.deep.equal([]);
        // the repositories got their own manager back, as TypeORM made it
        for (const repo of [before, during]) {
          const d = Object.getOwnPropertyDescriptor(repo, 'manager');
          expect(d?.value, 'an own data property again').to.be.instanceOf(EntityManager);
          expect(d?.get).to.equal(undefined);
        }
        expect(differences(otherOriginal, snapshot({ dataSource: other }))).to.deep.equal(['dataSource.isInitialized']); // destroyed
      } finally {
        if (other.isInitialized) await other.destroy();
      }
    });
  });
}
