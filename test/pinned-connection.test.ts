import { expect } from 'chai';
import { currentManager, transaction, withAdvisoryLock, withLock } from '../src';
import { race } from '../src/testing';
import { BillUser } from './fixtures/billing';
import { describeEachBackend } from './support/suite';

/**
 * A session-scoped advisory lock pins one connection; everything nested in it — transaction(),
 * dataSource.manager, repositories obtained earlier, row locks — must run on that connection,
 * or a pool of size 1 would hang waiting for a second one.
 */
describeEachBackend('session lock: nested work reuses the pinned connection', [BillUser], (env) => {
  const connectionId = async (run: (sql: string) => Promise<any[]>) => String((await run(env.handle.dialect.connectionIdSql))[0].connectionId);

  it('transaction(), dataSource.manager, earlier repositories and withLock run on the pinned connection', async () => {
    const users = env.ds.getRepository(BillUser);
    const user = await users.save(users.create({ credits: 10 }));
    await withAdvisoryLock(
      'pinned-check',
      async ({ queryRunner }) => {
        const pinned = await connectionId((s) => queryRunner.query(s));
        expect(await connectionId((s) => env.ds.manager.query(s))).to.equal(pinned);
        expect(await connectionId((s) => users.query(s))).to.equal(pinned);
        await transaction(async () => {
          expect(await connectionId((s) => currentManager().query(s))).to.equal(pinned);
          await withLock(user, async (u) => {
            u.credits -= 1;
            await users.save(u);
          });
        });
      },
      { scope: 'session' },
    );
    expect((await users.findOneByOrFail({ id: user.id })).credits).to.equal(9);
  });

  it('pool of size 1: 10 concurrent callers doing transactional work inside a session lock all finish', async function () {
    this.timeout(30_000);
    const { createDataSource } = await import('./support/backends');
    const { installLocking } = await import('../src');
    env.handle.uninstall();
    const ds = (await createDataSource(env.name, [BillUser], { poolSize: 1, fresh: false }))!;
    const handle = await installLocking(ds);
    try {
      const users = ds.getRepository(BillUser);
      const user = await users.save(users.create({ credits: 100 }));
      const results = await race(10, () =>
        withAdvisoryLock(
          `pool-one:${user.id}`,
          async () => {
            await transaction(async () => {
              const u = await users.findOneByOrFail({ id: user.id });
              u.credits -= 1;
              await users.save(u);
            });
          },
          { scope: 'session' },
        ),
      );
      expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
      expect((await users.findOneByOrFail({ id: user.id })).credits).to.equal(90);
    } finally {
      handle.uninstall();
      await ds.destroy();
      (env as any).handle = await installLocking(env.ds);
    }
  });
});
