import { expect } from 'chai';
import Redis from 'ioredis';
import {
  LockConfigError,
  Redlock,
  TransactionRequiredError,
  withDistributedLock,
  afterCommit,
  afterCompletion,
  afterRollback,
  releaseAfterCommit,
  transaction,
  type LockEvent,
} from '../src';
import { requireRedis } from './support/redis-answers';
import { redisUrls } from './support/redis-servers';
import { BillUser } from './fixtures/billing';
import { MkOrder, MkUser } from './fixtures/mikro-billing';
import { describeEachMikroBackend } from './support/mikro-suite';
import { describeEachBackend } from './support/suite';

/** The checks every ORM shares: `count(name)` reads committed rows from another connection; `insert(name)` writes on the ambient transaction. */
interface HookEnv {
  events: LockEvent[];
  count(name: string): Promise<number>;
  insert(name: string): Promise<void>;
  /** The ORM's own transaction API (TypeORM dataSource.transaction, MikroORM em.transactional). */
  ormTransaction(fn: () => Promise<void>): Promise<void>;
  /** The ORM's own nested transaction (a savepoint) inside an ambient one. */
  ormNested(fn: () => Promise<void>): Promise<void>;
}

function hookTests(env: HookEnv) {
  it('afterCommit runs once, after the outermost COMMIT (the row is visible to others), in registration order; afterRollback does not run', async () => {
    const seen: string[] = [];
    await transaction(async () => {
      await env.insert('hook-commit');
      afterCommit(async () => seen.push(`commit-1 visible=${await env.count('hook-commit')}`));
      afterRollback(() => seen.push('rollback'));
      await transaction(async () => {
        afterCompletion((outcome) => seen.push(`completion ${outcome}`));
      }); // joins: nothing runs at the inner end
      expect(seen).to.deep.equal([]);
      afterCommit(() => seen.push('commit-2'));
    });
    expect(seen).to.deep.equal(['commit-1 visible=1', 'completion commit', 'commit-2']);
  });

  it('after a rollback: afterRollback and afterCompletion run, afterCommit does not', async () => {
    const seen: string[] = [];
    const err = await transaction(async () => {
      await env.insert('hook-rollback');
      afterCommit(() => seen.push('commit'));
      afterRollback(() => seen.push('rollback'));
      afterCompletion((outcome) => seen.push(`completion ${outcome}`));
      throw new Error('boom');
    }).then(
      () => null,
      (e) => e,
    );
    expect(err.message).to.equal('boom');
    expect(seen).to.deep.equal(['rollback', 'completion rollback']);
    expect(await env.count('hook-rollback')).to.equal(0);
  });

  it("a nested savepoint (propagation 'nested') that rolls back drops its hooks; one that is released keeps them", async () => {
    const seen: string[] = [];
    await transaction(async () => {
      afterCommit(() => seen.push('outer'));
      await transaction(
        async () => {
          afterCommit(() => seen.push('dropped'));
          afterCompletion(() => seen.push('dropped too'));
          throw new Error('inner');
        },
        { propagation: 'nested' },
      ).catch(() => undefined);
      await transaction(
        async () => {
          afterCommit(() => seen.push('kept'));
        },
        { propagation: 'nested' },
      );
    });
    expect(seen).to.deep.equal(['outer', 'kept']);
  });

  it("the ORM's own nested transaction (a savepoint) that rolls back drops its hooks", async () => {
    const seen: string[] = [];
    await transaction(async () => {
      afterCommit(() => seen.push('outer'));
      await env
        .ormNested(async () => {
          afterCommit(() => seen.push('dropped'));
          throw new Error('inner');
        })
        .catch(() => undefined);
    });
    expect(seen).to.deep.equal(['outer']);
  });

  it("hooks registered at every level (outer, a released savepoint, a joined call, the ORM's own released nested transaction) run once each, after the outermost COMMIT, in registration order", async () => {
    const seen: string[] = [];
    await transaction(async () => {
      afterCommit(() => seen.push('1 outer'));
      await transaction(
        async () => {
          afterCommit(() => seen.push('2 nested'));
          afterCompletion((outcome) => seen.push(`3 nested completion ${outcome}`));
        },
        { propagation: 'nested' },
      );
      afterCommit(() => seen.push('4 outer'));
      await transaction(async () => {
        afterCommit(() => seen.push('5 joined'));
      });
      await env.ormNested(async () => {
        afterCommit(() => seen.push('6 orm nested'));
      });
      await transaction(
        async () => {
          afterCommit(() => seen.push('7 mandatory'));
        },
        { propagation: 'mandatory' },
      );
      expect(seen, 'nothing before the outermost COMMIT').to.deep.equal([]);
    });
    expect(seen).to.deep.equal(['1 outer', '2 nested', '3 nested completion commit', '4 outer', '5 joined', '6 orm nested', '7 mandatory']);
  });

  it("a 'requires_new' transaction's hooks run at its own COMMIT, before the outer transaction ends; the outer's rollback runs only the outer's", async () => {
    const seen: string[] = [];
    const err = await transaction(async () => {
      afterCommit(() => seen.push('outer commit'));
      afterRollback(() => seen.push('outer rollback'));
      await transaction(
        async () => {
          afterCommit(() => seen.push('inner commit'));
          afterRollback(() => seen.push('inner rollback'));
        },
        { propagation: 'requires_new' },
      );
      expect(seen).to.deep.equal(['inner commit']);
      throw new Error('boom');
    }).then(
      () => null,
      (e) => e,
    );
    expect(err.message).to.equal('boom');
    expect(seen).to.deep.equal(['inner commit', 'outer rollback']);
  });

  it("a hook that throws after a rollback: the transaction rejects with its own error, not the hook's; the observers get hook_failed", async () => {
    env.events.length = 0;
    const seen: string[] = [];
    const err = await transaction(async () => {
      afterRollback(function failingRollbackHook() {
        throw new Error('rollback hook broke');
      });
      afterCompletion(async function failingCompletionHook() {
        await Promise.resolve();
        throw new Error('completion hook broke');
      });
      afterRollback(() => seen.push('after the failing ones'));
      throw new Error('the body failed');
    }).then(
      () => null,
      (e) => e,
    );
    expect(err.message).to.equal('the body failed');
    expect(seen).to.deep.equal(['after the failing ones']);
    const failed = env.events.filter((e) => e.type === 'hook_failed');
    expect(failed.map((e) => [e.target, (e.error as Error).message])).to.deep.equal([
      ['afterRollback (failingRollbackHook)', 'rollback hook broke'],
      ['afterCompletion (failingCompletionHook)', 'completion hook broke'],
    ]);
  });

  it("hooks work in the ORM's own transaction when it is the ambient one", async () => {
    const seen: string[] = [];
    await env.ormTransaction(async () => {
      await env.insert('hook-orm-tx');
      afterCommit(async () => seen.push(`commit visible=${await env.count('hook-orm-tx')}`));
    });
    expect(seen).to.deep.equal(['commit visible=1']);
    const err = await env
      .ormTransaction(async () => {
        afterRollback(() => seen.push('rollback'));
        throw new Error('boom');
      })
      .then(
        () => null,
        (e) => e,
      );
    expect(err.message).to.equal('boom');
    expect(seen).to.deep.equal(['commit visible=1', 'rollback']);
  });

  it('a hook that throws does not fail the committed transaction; the observers get hook_failed with the error; later hooks still run', async () => {
    env.events.length = 0;
    const seen: string[] = [];
    const result = await transaction(async () => {
      await env.insert('hook-error');
      afterCommit(function failing() {
        throw new Error('hook broke');
      });
      afterCommit(() => seen.push('after the failing one'));
      return 'committed';
    });
    expect(result).to.equal('committed');
    expect(seen).to.deep.equal(['after the failing one']);
    expect(await env.count('hook-error')).to.equal(1);
    const failed = env.events.filter((e) => e.type === 'hook_failed');
    expect(failed).to.have.length(1);
    expect(failed[0].kind).to.equal('transaction');
    expect(failed[0].target).to.equal('afterCommit (failing)');
    expect((failed[0].error as Error).message).to.equal('hook broke');
  });

  it('releaseAfterCommit(lease): the Redis lease is held through the COMMIT and released after it (and after a rollback)', async function () {
    await requireRedis(this, 'releaseAfterCommit');
    const client = new Redis(redisUrls()[0], { maxRetriesPerRequest: 2 });
    const redlock = new Redlock([client], { namespace: `hooks${process.pid}` });
    try {
      const key = `invoice-${process.pid}-${Date.now()}-${Math.random()}`;
      let heldAtCommit: boolean | undefined;
      let heldAfterCommit: boolean | undefined;
      await transaction(async () => {
        const lease = await redlock.acquire(key, 10_000);
        afterCommit(async () => {
          // registered before releaseAfterCommit: runs after the COMMIT, before the release
          heldAtCommit = (await redlock.tryAcquire(key, 1_000)) === null;
        });
        releaseAfterCommit(lease);
        afterCommit(async () => {
          // registered after releaseAfterCommit: runs after the release
          heldAfterCommit = await redlock.tryAcquire(key, 1_000).then(async (other) => (other ? (await other.release(), false) : true));
        });
        expect(await redlock.tryAcquire(key, 1_000)).to.equal(null); // held inside the transaction
        await env.insert('lease-commit');
      });
      expect(heldAtCommit).to.equal(true); // still held after the COMMIT …
      expect(heldAfterCommit).to.equal(false); // … until releaseAfterCommit's hook released it
      const err = await transaction(async () => {
        releaseAfterCommit(await redlock.acquire(key, 10_000));
        throw new Error('boom');
      }).then(
        () => null,
        (e) => e,
      );
      expect(err.message).to.equal('boom');
      const again = await redlock.tryAcquire(key, 1_000);
      expect(again).to.not.equal(null);
      await again!.release();
    } finally {
      client.disconnect();
    }
  });

  it('redlock.using(…, { releaseAfterCommit: true }) inside a transaction keeps the lease after fn until the transaction has ended (the control without it releases before the COMMIT); after a rollback too; outside a transaction at once', async function () {
    await requireRedis(this, 'releaseAfterCommit');
    const client = new Redis(redisUrls()[0], { maxRetriesPerRequest: 2 });
    const redlock = new Redlock([client], { namespace: `hooks${process.pid}` });
    try {
      const key = `using-${process.pid}-${Date.now()}-${Math.random()}`;
      const free = async () => {
        const other = await redlock.tryAcquire(key, 1_000);
        if (other) await other.release();
        return other !== null;
      };
      const seen: Record<string, boolean> = {};
      await transaction(async () => {
        afterCommit(async () => void (seen.atCommit = await free())); // registered first: runs after the COMMIT, before the release
        await redlock.using(key, 10_000, () => env.insert('using-kept'), { releaseAfterCommit: true });
        seen.afterUsing = await free();
      });
      seen.afterTransaction = await free();
      expect(seen).to.deep.equal({ afterUsing: false, atCommit: false, afterTransaction: true });
      expect(await env.count('using-kept')).to.equal(1);

      // the control: without the option the lease is gone when fn returns, before the COMMIT
      await transaction(async () => {
        await redlock.using(key, 10_000, () => env.insert('using-control'));
        seen.controlAfterUsing = await free();
      });
      expect(seen.controlAfterUsing).to.equal(true);

      // a rollback ends it too
      const err = await transaction(async () => {
        await redlock.using(key, 10_000, () => undefined, { releaseAfterCommit: true });
        seen.beforeRollback = await free();
        throw new Error('boom');
      }).then(
        () => null,
        (e) => e,
      );
      expect(err.message).to.equal('boom');
      expect(seen.beforeRollback).to.equal(false);
      expect(await free()).to.equal(true);

      // outside a transaction: released when fn returns
      await redlock.using(key, 10_000, () => undefined, { releaseAfterCommit: true });
      expect(await free()).to.equal(true);

      // withDistributedLock (and @DistributedLock) pass it on
      await transaction(async () => {
        await withDistributedLock(redlock, key, 10_000, () => undefined, { releaseAfterCommit: true });
        seen.withDistributedLock = await free();
      });
      expect(seen.withDistributedLock).to.equal(false);
      expect(await free()).to.equal(true);

      const bad = await redlock
        .using(key, 1_000, () => 1, { releaseAfterCommit: 'yes' as any })
        .then(
          () => null,
          (e) => e,
        );
      expect(bad).to.be.instanceOf(LockConfigError);
    } finally {
      client.disconnect();
    }
  });

  it('outside a transaction each throws TransactionRequiredError', () => {
    expect(() => afterCommit(() => 1)).to.throw(TransactionRequiredError);
    expect(() => afterRollback(() => 1)).to.throw(TransactionRequiredError);
    expect(() => afterCompletion(() => 1)).to.throw(TransactionRequiredError);
  });
}

const typeormEvents: LockEvent[] = [];
describeEachBackend(
  'commit hooks',
  [BillUser],
  (env) => {
    const repo = () => env.ds.getRepository(BillUser);
    hookTests({
      events: typeormEvents,
      count: async (name) => {
        const qr = env.ds.createQueryRunner();
        try {
          return await qr.manager.countBy(BillUser, { name });
        } finally {
          await qr.release();
        }
      },
      insert: async (name) => void (await repo().save(repo().create({ credits: 1, name }))),
      ormTransaction: (fn) => env.ds.transaction(() => fn()),
      ormNested: (fn) => env.ds.manager.transaction(() => fn()),
    });
  },
  { install: { observers: [{ onLockEvent: (e) => typeormEvents.push(e) }] } },
);

const mikroEvents: LockEvent[] = [];
describeEachMikroBackend(
  'commit hooks',
  [MkUser, MkOrder],
  (env) => {
    const credits = (name: string) => 1000 + name.length * 7 + name.charCodeAt(name.length - 1);
    hookTests({
      events: mikroEvents,
      count: (name) => env.orm.em.fork().count(MkUser, { credits: credits(name) }),
      insert: async (name) => {
        const em = env.orm.em.getContext();
        em.create(MkUser, { credits: credits(name) });
        await em.flush();
      },
      ormTransaction: (fn) => env.orm.em.fork().transactional(() => fn()),
      ormNested: (fn) => env.orm.em.getContext().transactional(() => fn()),
    });
  },
  { install: { observers: [{ onLockEvent: (e) => mikroEvents.push(e) }] } },
);
