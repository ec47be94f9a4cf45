/**
 * Siblings in one transaction: the README's Billing example — two
 * `@AdvisoryLock` charges for one user as `Promise.all` siblings inside one `@Transactional`
 * batch — runs the bodies one after the other, so the credits are exact; the control (the same
 * batch without the lock) loses a charge. Nested re-entry stays a no-op. Row locks of siblings on
 * one connection do not exclude each other (one transaction holds the row): what the README says.
 */
import { expect } from 'chai';
import { Transactional, advisoryLockExists, transaction, withAdvisoryLock, withLock } from '../src';
import { runInFrame } from '../src/context/store';
import { EDGE_ENTITIES, EdgeAccount, EdgeBilling, sleep } from './fixtures/edges';
import { describeEachBackend } from './support/suite';

const outside = <T>(fn: () => Promise<T>) => runInFrame({ txs: new Map(), values: new Map() }, fn);

describeEachBackend('edges: siblings in one transaction', EDGE_ENTITIES, (env) => {
  const accounts = () => env.ds.getRepository(EdgeAccount);
  const user = (credits = 100) => accounts().save(accounts().create({ name: 'sib', credits }));
  const creditsOf = async (id: number) => (await outside(() => accounts().findOneByOrFail({ id }))).credits;

  it('the README Billing example: two @AdvisoryLock charges as Promise.all siblings in one @Transactional batch — credits exact', async () => {
    const billing = new EdgeBilling(accounts());
    const u = await user();
    await billing.batch(u.id, [{ price: 10 }, { price: 20 }]);
    expect(await creditsOf(u.id)).to.equal(70);
  });

  it('control: the same batch without the lock loses a charge', async () => {
    const billing = new EdgeBilling(accounts());
    const u = await user();
    await billing.batchUnlocked(u.id, [{ price: 10 }, { price: 20 }]);
    expect(await creditsOf(u.id), 'a lost update: the window is real').to.be.oneOf([80, 90]);
  });

  it('five siblings for one key run their bodies one at a time; a sibling for another key is not held up; all keys are released at the end', async () => {
    let inside = 0;
    let max = 0;
    const order: string[] = [];
    await transaction(async () => {
      await Promise.all([
        ...[1, 2, 3, 4, 5].map((i) =>
          withAdvisoryLock('edge-sib-a', async () => {
            inside += 1;
            max = Math.max(max, inside);
            order.push(`a${i}`);
            await sleep(10);
            inside -= 1;
          }),
        ),
        withAdvisoryLock('edge-sib-b', async () => {
          order.push('b');
        }),
      ]);
    });
    expect(max, 'bodies for one key at once').to.equal(1);
    expect(order.indexOf('b'), 'the other key ran while the first key’s siblings queued').to.be.lessThan(order.length - 1);
    expect(await advisoryLockExists('edge-sib-a')).to.equal(false);
  });

  for (const where of ['in a transaction', 'in a session lock (its pinned connection)'] as const) {
    it(`session-scoped siblings ${where} share one connection, yet run their bodies one at a time`, async () => {
      let inside = 0;
      let max = 0;
      const siblings = () =>
        Promise.all(
          [1, 2, 3].map(() =>
            withAdvisoryLock(
              'edge-sib-s',
              async () => {
                inside += 1;
                max = Math.max(max, inside);
                await sleep(15);
                inside -= 1;
              },
              { scope: 'session' },
            ),
          ),
        );
      if (where === 'in a transaction') await transaction(siblings);
      else await withAdvisoryLock('edge-sib-outer', siblings, { scope: 'session' });
      expect(max, 'bodies for one key at once').to.equal(1);
      expect(await advisoryLockExists('edge-sib-s'), 'released').to.equal(false);
    });
  }

  it('nested re-entry inside a sibling stays a no-op (no self-deadlock), and a sibling that fails lets the next one run', async () => {
    const ran: string[] = [];
    const results = await transaction(() =>
      Promise.allSettled([
        withAdvisoryLock('edge-sib-n', async () => {
          await withAdvisoryLock('edge-sib-n', async (ctx) => {
            expect(ctx.acquired, 're-entry takes nothing').to.equal(false);
            ran.push('nested');
          });
          throw new Error('first fails');
        }),
        withAdvisoryLock('edge-sib-n', async () => {
          ran.push('second');
        }),
      ]),
    );
    expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'fulfilled']);
    expect(ran).to.deep.equal(['nested', 'second']);
  });

  it('@AdvisoryLock siblings of two @Transactional batches for one user in two requests: still exact (the lock also excludes the other transaction)', async () => {
    const billing = new EdgeBilling(accounts());
    const u = await user();
    await Promise.all([outside(() => billing.batch(u.id, [{ price: 1 }, { price: 2 }])), outside(() => billing.batch(u.id, [{ price: 3 }, { price: 4 }]))]);
    expect(await creditsOf(u.id)).to.equal(90);
  });

  it('row locks of siblings on one connection do not exclude each other (one transaction holds the row): as the README says, use an advisory lock or await them in turn', async () => {
    const u = await user();
    class Batch {
      @Transactional()
      async run(id: number, prices: number[]) {
        const row = await accounts().findOneByOrFail({ id });
        await Promise.all(
          prices.map((price) =>
            withLock(accounts().create({ id: row.id }), async (locked) => {
              await sleep(20);
              locked.credits -= price;
              await accounts().save(locked);
            }),
          ),
        );
      }
    }
    await new Batch().run(u.id, [10, 20]);
    expect(await creditsOf(u.id), 'both siblings held the row at once: one charge was lost').to.be.oneOf([80, 90]);
  });
});
