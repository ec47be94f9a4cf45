import { expect } from 'chai';
import { Current, Transactional, currentManager, defineCurrent, inTransaction, transaction, LockConfigError } from '../src';
import { Barrier, race } from '../src/testing';
import { BillUser, sleep } from './fixtures/billing';
import { describeEachBackend } from './support/suite';

describeEachBackend('transaction context', [BillUser], (env) => {
  /** Connection id (and PostgreSQL txid) as seen through one path. */
  const ident = async (run: (sql: string) => Promise<any[]>) => {
    const [row] = await run(env.handle.dialect.connectionIdSql);
    return JSON.stringify({ c: String(row.connectionId), t: row.txId === undefined ? undefined : String(row.txId) });
  };

  it('inside @Transactional(), a repository obtained before the call, dataSource.manager, getRepository and currentManager() all run on the transaction', async () => {
    const repoBefore = env.ds.getRepository(BillUser); // e.g. injected in a constructor
    class Service {
      @Transactional()
      async work() {
        const viaManager = await ident((s) => currentManager().query(s));
        const seen = [
          await ident((s) => repoBefore.query(s)),
          await ident((s) => env.ds.manager.query(s)),
          await ident((s) => env.ds.getRepository(BillUser).query(s)),
          await ident((s) => env.ds.query(s)),
        ];
        const qbRunner = (repoBefore.createQueryBuilder('u') as any).obtainQueryRunner();
        expect(qbRunner).to.equal(currentManager().queryRunner);
        expect((env.ds.createQueryBuilder(BillUser, 'u') as any).obtainQueryRunner()).to.equal(qbRunner);
        const saved = await repoBefore.save(repoBefore.create({ credits: 7, name: 'in-tx' }));
        // invisible to another connection until commit
        const outside = env.ds.createQueryRunner();
        const visible = await outside.query(`SELECT COUNT(*) AS n FROM bill_users WHERE id = ${saved.id}`);
        await outside.release();
        return { viaManager, seen, invisible: Number(visible[0].n) === 0, id: saved.id };
      }
    }
    const r = await new Service().work();
    for (const s of r.seen) expect(s).to.equal(r.viaManager);
    expect(r.invisible).to.equal(true);
    expect(await repoBefore.countBy({ id: r.id })).to.equal(1);
    // outside, the default manager is back
    expect(inTransaction()).to.equal(false);
    expect(currentManager()).to.equal(env.ds.manager);
  });

  it('an exception rolls back everything written through any path', async () => {
    const repo = env.ds.getRepository(BillUser);
    const err = await transaction(async () => {
      await repo.save(repo.create({ credits: 1, name: 'rolled-back' }));
      await env.ds.manager.save(repo.create({ credits: 2, name: 'rolled-back' }));
      throw new Error('boom');
    }).then(
      () => null,
      (e) => e,
    );
    expect(err.message).to.equal('boom');
    expect(await repo.countBy({ name: 'rolled-back' })).to.equal(0);
  });

  it('nested calls join; requires_new opens its own transaction that commits on its own', async () => {
    const repo = env.ds.getRepository(BillUser);
    const ids: string[] = [];
    const err = await transaction(async () => {
      ids.push(await ident((s) => env.ds.query(s)));
      await transaction(async () => ids.push(await ident((s) => env.ds.query(s))));
      await transaction(
        async () => {
          ids.push(await ident((s) => env.ds.query(s)));
          await repo.save(repo.create({ credits: 3, name: 'inner-new' }));
        },
        { propagation: 'requires_new' },
      );
      throw new Error('outer fails');
    }).then(
      () => null,
      (e) => e,
    );
    expect(err.message).to.equal('outer fails');
    expect(ids[1]).to.equal(ids[0]);
    expect(ids[2]).to.not.equal(ids[0]);
    expect(await repo.countBy({ name: 'inner-new' })).to.equal(1);
  });

  it('concurrent calls never share a transaction', async () => {
    const allOpen = new Barrier(10);
    const results = await race(10, () =>
      transaction(async () => {
        const id = await ident((s) => env.ds.query(s));
        await allOpen.wait(); // all ten transactions are open at once
        expect(await ident((s) => env.ds.query(s))).to.equal(id);
        return id;
      }),
    );
    const ids = results.map((r) => (r as PromiseFulfilledResult<string>).value);
    expect(new Set(ids).size).to.equal(10);
  });

  it('applies the isolation level and refuses a different one when joining', async () => {
    const level = await transaction(
      async () => {
        const sql = env.name === 'postgres' ? `SELECT current_setting('transaction_isolation') AS l` : 'SELECT 1 AS l';
        const [row] = await env.ds.query(sql);
        const err = await transaction(async () => 1, { isolation: 'READ COMMITTED' }).then(
          () => null,
          (e) => e,
        );
        expect(err).to.be.instanceOf(LockConfigError);
        return row.l;
      },
      { isolation: 'SERIALIZABLE' },
    );
    if (env.name === 'postgres') expect(level).to.equal('serializable');
  });

  it('rejects bad options with LockConfigError', async () => {
    for (const opts of [{ propagation: 'nested_new' }, { isolation: 'SNAPSHOT' }] as any[]) {
      const err = await transaction(async () => 1, opts).then(
        () => null,
        (e) => e,
      );
      expect(err).to.be.instanceOf(LockConfigError);
    }
  });
});

describe('Current (request-scoped values)', () => {
  it('50 concurrent Current.run with different values: each sees only its own, across awaits', async () => {
    const results = await race(50, (i) =>
      Current.run({ requestId: i }, async () => {
        const seen: unknown[] = [];
        for (let k = 0; k < 5; k++) {
          await sleep(Math.random() * 5);
          seen.push(Current.get('requestId'));
          Current.set('step', `${i}:${k}`);
          await Promise.resolve();
          seen.push(Number(String(Current.get('step')).split(':')[0]));
        }
        return seen;
      }),
    );
    results.forEach((r, i) => {
      expect(r.status).to.equal('fulfilled');
      expect((r as PromiseFulfilledResult<unknown[]>).value.every((v) => v === i)).to.equal(true);
    });
  });

  it('nested runs layer values without changing the outer scope; set outside a run is refused', async () => {
    await Current.run({ a: 1, b: 2 }, async () => {
      await Current.run({ b: 3 }, async () => {
        expect(Current.get('a')).to.equal(1);
        expect(Current.get('b')).to.equal(3);
      });
      expect(Current.get('b')).to.equal(2);
    });
    expect(Current.get('a')).to.equal(undefined);
    expect(() => Current.set('x', 1)).to.throw(LockConfigError, /outside Current.run/);
  });

  it('defineCurrent gives a typed view', async () => {
    const Req = defineCurrent<{ userId: number; ip: string }>();
    await Req.run({ userId: 7 }, async () => {
      Req.set('ip', '10.0.0.1');
      await sleep(1);
      const id: number | undefined = Req.get('userId');
      expect(id).to.equal(7);
      expect(Req.get('ip')).to.equal('10.0.0.1');
    });
  });
});
