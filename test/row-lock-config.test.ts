import { expect } from 'chai';
import { DataSource } from 'typeorm';
import {
  LockConfigError,
  LockNotAvailableError,
  Pessimistic,
  TransactionRequiredError,
  Transactional,
  installLocking,
  lock,
  transaction,
  withLock,
  type LockEvent,
} from '../src';
import { BillUser } from './fixtures/billing';
import { BadPolicyItem, KeyShareItem, NowaitItem } from './fixtures/policy-entities';
import { dataSourceOptions } from './support/backends';
import { describeEachBackend } from './support/suite';

const events: LockEvent[] = [];

describeEachBackend('row locks: bad input and policies', [BillUser, NowaitItem], (env) => {
  const reject = (p: Promise<unknown>) =>
    p.then(
      () => {
        throw new Error('expected a rejection');
      },
      (e) => e,
    );

  it('lock() outside a transaction → TransactionRequiredError naming the entity', async () => {
    const user = await env.ds.getRepository(BillUser).save({ credits: 1 });
    const err = await reject(lock(Object.assign(new BillUser(), user)));
    expect(err).to.be.instanceOf(TransactionRequiredError);
    expect(err.message).to.contain('BillUser');
  });

  it('an entity without a primary-key value, or a non-entity → LockConfigError, nothing written', async () => {
    const repo = env.ds.getRepository(BillUser);
    const err = await reject(
      transaction(async () => {
        await repo.save(repo.create({ credits: 1, name: 'half-written' }));
        await lock(repo.create({ credits: 5 }));
      }),
    );
    expect(err).to.be.instanceOf(LockConfigError);
    expect(err.message).to.contain('BillUser').and.contain('primary-key');
    expect(await repo.countBy({ name: 'half-written' })).to.equal(0);
    const plain = await reject(withLock({ id: 1 } as object, async () => 1));
    expect(plain).to.be.instanceOf(LockConfigError);
    expect(plain.message, 'a plain object: says to create it from the repository').to.contain('a plain object').and.contain('repository.create(');
    expect(await reject(withLock(null as any, async () => 1))).to.be.instanceOf(LockConfigError);
  });

  it('bad option values → LockConfigError naming the option', async () => {
    const user = await env.ds.getRepository(BillUser).save(env.ds.getRepository(BillUser).create({ credits: 1 }));
    for (const [opts, word] of [
      [{ mode: 'bogus' }, 'mode'],
      [{ onLocked: 'maybe' }, 'onLocked'],
      [{ timeoutMs: -1 }, 'timeoutMs'],
      [{ timeoutMs: 200, onLocked: 'nowait' }, 'timeoutMs'],
    ] as const) {
      const err = await reject(withLock(user, async () => 1, opts as any));
      expect(err, JSON.stringify(opts)).to.be.instanceOf(LockConfigError);
      expect(err.message).to.contain(word);
    }
  });

  it('an option this database cannot honour is refused at the call', async () => {
    const user = await env.ds.getRepository(BillUser).save(env.ds.getRepository(BillUser).create({ credits: 1 }));
    const run = withLock(user, async () => 'ok', { mode: 'no_key_update' });
    if (env.handle.dialect.capabilities.rowLockModes.has('no_key_update')) expect(await run).to.equal('ok');
    else {
      const err = await reject(run);
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.message).to.contain('no_key_update').and.contain(env.handle.dialect.name);
    }
  });

  it("an entity's @Pessimistic policy applies to lock(): nowait by policy", async () => {
    const repo = env.ds.getRepository(NowaitItem);
    const item = await repo.save(repo.create({}));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let holding!: () => void;
    const isHeld = new Promise<void>((r) => (holding = r));
    const holder = withLock(repo.create({ id: item.id }), async () => {
      holding();
      await held;
    });
    await isHeld;
    const err = await reject(withLock(item, async () => 1));
    release();
    await holder;
    expect(err).to.be.instanceOf(LockNotAvailableError);
  });

  it('a method decorator on a non-async method → LockConfigError naming Class.method', () => {
    expect(() => {
      class Svc {
        @Pessimistic()
        charge(): number {
          return 1;
        }
      }
      return Svc;
    }).to.throw(LockConfigError, /Svc\.charge.*async/);
    expect(() => {
      class Svc2 {
        @Transactional()
        run(): void {}
      }
      return Svc2;
    }).to.throw(LockConfigError, /Svc2\.run/);
  });

  it('onLockEvent reports acquired row locks with the waited time', async () => {
    events.length = 0;
    env.handle.uninstall();
    const handle = await installLocking(env.ds, { onLockEvent: (e) => events.push(e) });
    try {
      const user = await env.ds.getRepository(BillUser).save(env.ds.getRepository(BillUser).create({ credits: 1 }));
      await withLock(user, async () => undefined);
      expect(events.some((e) => e.type === 'acquired' && e.kind === 'row' && e.target === 'BillUser' && typeof e.waitedMs === 'number')).to.equal(true);
    } finally {
      handle.uninstall();
      (env as any).handle = await installLocking(env.ds);
    }
  });

  it('installLocking validates decorated entities: an unsupported or contradictory policy throws naming the entity, and nothing is installed', async () => {
    const cases: Array<[Function, boolean]> = [
      [KeyShareItem, !env.handle.dialect.capabilities.rowLockModes.has('key_share')],
      [BadPolicyItem, true],
    ];
    for (const [entity, mustFail] of cases) {
      const ds = await new DataSource((await dataSourceOptions(env.name, [entity], { fresh: false }))!).initialize();
      try {
        const managerBefore = ds.manager;
        const result = await installLocking(ds).then(
          (h) => h,
          (e) => e,
        );
        if (mustFail) {
          expect(result, entity.name).to.be.instanceOf(LockConfigError);
          expect(result.message).to.contain(entity.name);
          expect(ds.manager).to.equal(managerBefore);
          expect(ds.subscribers).to.have.length(0);
          // nothing was registered: transaction() does not know this DataSource
          expect(await reject(transaction(async () => 1, { dataSource: ds }))).to.be.instanceOf(LockConfigError);
        } else {
          expect(result.dialect.name).to.equal(env.handle.dialect.name);
          result.uninstall();
        }
      } finally {
        await ds.destroy();
      }
    }
  });

  it('installLocking refuses an uninitialized DataSource, a second install and bad options', async () => {
    const opts = (await dataSourceOptions(env.name, [BillUser], { fresh: false }))!;
    expect(await reject(installLocking(new DataSource(opts)))).to.be.instanceOf(LockConfigError);
    expect(await reject(installLocking(env.ds))).to.be.instanceOf(LockConfigError);
    const ds = await new DataSource(opts).initialize();
    try {
      expect(await reject(installLocking(ds, { lockTimeoutMs: -5 }))).to.be.instanceOf(LockConfigError);
      expect(await reject(installLocking(ds, { namespace: 5 as any }))).to.be.instanceOf(LockConfigError);
    } finally {
      await ds.destroy();
    }
  });
});
