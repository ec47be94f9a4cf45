import { expect } from 'chai';
import { Like } from 'typeorm';
import { LockConfigError, UniqueViolationError, createOrFind, transaction } from '../src';
import { Barrier, race } from '../src/testing';
import { Account, Setting } from './fixtures/optimistic-models';
import { describeEachBackend } from './support/suite';
import { reasons } from './support/rejection';

describeEachBackend('createOrFind', [Account, Setting], (env) => {
  const accounts = () => env.ds.getRepository(Account);
  const fail = (p: Promise<unknown>) =>
    p.then(
      () => null,
      (e) => e,
    );

  it('creates the row when it is missing, returns it (with defaults) when it exists', async () => {
    const created = await createOrFind(accounts(), { email: 'a@example.com' }, { name: 'Ann' });
    expect(created.id).to.be.a('number');
    expect(created).to.include({ email: 'a@example.com', name: 'Ann' });
    const again = await createOrFind(accounts(), { email: 'a@example.com' }, { name: 'Other' });
    expect(again.id).to.equal(created.id);
    expect(again.name, 'an existing row is returned as it is').to.equal('Ann');
    expect(await accounts().countBy({ email: 'a@example.com' })).to.equal(1);
  });

  it('outside a transaction: one INSERT when new, INSERT + SELECT on a conflict', async () => {
    env.log.start();
    await createOrFind(accounts(), { email: 'rt@example.com' });
    const created = env.log.stop();
    expect(created, created.join(' | ')).to.have.length(1);
    env.log.start();
    await createOrFind(accounts(), { email: 'rt@example.com' });
    const found = env.log.stop();
    expect(found, found.join(' | ')).to.have.length(2);
  });

  it('50 concurrent callers for one email: one row, and every caller got the same id', async () => {
    const results = await race(50, (i) => createOrFind(accounts(), { email: 'race@example.com' }, { name: `caller ${i}` }));
    expect(reasons(results)).to.deep.equal([]);
    const ids = new Set(results.map((r) => (r as PromiseFulfilledResult<Account>).value.id));
    expect(ids.size).to.equal(1);
    expect(await accounts().countBy({ email: 'race@example.com' })).to.equal(1);
  });

  it('control: find-then-insert without createOrFind lets concurrent callers collide', async () => {
    // every caller has looked before the first inserts (left to overlap, a loaded machine let the first
    // insert land before the others looked, and they found it: no collision)
    const allLooked = new Barrier(20);
    const results = await race(20, async () => {
      const existing = await allLooked.wait(accounts().findOneBy({ email: 'naive@example.com' }));
      if (existing) return existing;
      return accounts().save(accounts().create({ email: 'naive@example.com' }));
    });
    expect(reasons(results), 'duplicate-key errors expected: every caller but one').to.have.length(19);
    expect(await accounts().countBy({ email: 'naive@example.com' })).to.equal(1);
  });

  it('inside an outer transaction: the conflict is contained in a savepoint, the transaction stays usable and commits', async () => {
    const existing = await createOrFind(accounts(), { email: 'tx@example.com' }, { name: 'first' });
    const result = await transaction(async () => {
      const before = await accounts().save(accounts().create({ email: 'before@example.com' }));
      env.log.start();
      const found = await createOrFind(accounts(), { email: 'tx@example.com' }, { name: 'second' });
      const statements = env.log.stop();
      const after = await accounts().save(accounts().create({ email: 'after@example.com' }));
      const created = await createOrFind(accounts(), { email: 'new-in-tx@example.com' });
      return { found, before, after, created, statements };
    });
    expect(result.found.id).to.equal(existing.id);
    expect(
      result.statements.some((q) => /SAVEPOINT/i.test(q)),
      result.statements.join(' | '),
    ).to.equal(true);
    expect(await accounts().countBy({ email: Like('%@example.com') })).to.be.at.least(4);
    for (const email of ['before@example.com', 'after@example.com', 'new-in-tx@example.com']) {
      expect(await accounts().countBy({ email }), email).to.equal(1);
    }
  });

  it('a composite unique index, a unique column and a natural primary key count as cover (a superset of one too)', async () => {
    const a = await createOrFind(accounts(), { tenant: 't1', handle: 'h' }, { email: 'c1@example.com' });
    const b = await createOrFind(accounts(), { tenant: 't1', handle: 'h' }, { email: 'c2@example.com' });
    expect(b.id).to.equal(a.id);
    const n = await createOrFind(accounts(), { nickname: 'nick' }, { email: 'n@example.com' });
    expect((await createOrFind(accounts(), { nickname: 'nick' }, { email: 'n2@example.com' })).id).to.equal(n.id);
    const settings = env.ds.getRepository(Setting);
    const theme = await createOrFind(settings, { key: 'theme' }, { value: 'dark' });
    expect(await createOrFind(settings, { key: 'theme' }, { value: 'light' })).to.deep.include({ key: 'theme', value: theme.value });
    expect(await settings.count()).to.equal(1);
    // a superset of a unique key is covered too
    expect((await createOrFind(accounts(), { email: 'c1@example.com', name: 'anonymous' })).id).to.equal(a.id);
  });

  it('a violation of another unique constraint (from the defaults) is not hidden', async () => {
    await createOrFind(accounts(), { email: 'taken@example.com' }, { nickname: 'taken' });
    const err = await fail(createOrFind(accounts(), { email: 'other@example.com' }, { nickname: 'taken' }));
    expect(err).to.be.instanceOf(UniqueViolationError);
    expect(err.entity).to.equal('Account');
    expect(err.message).to.contain('no row matches');
  });

  it('no unique constraint on the where columns → LockConfigError saying so; bad where → LockConfigError', async () => {
    const err = await fail(createOrFind(accounts(), { name: 'x' }));
    expect(err).to.be.instanceOf(LockConfigError);
    expect(err.message).to.contain('no unique constraint, unique index or primary key covers (name)');
    expect(err.entity).to.equal('Account');
    expect(await fail(createOrFind(accounts(), { handle: 'only-part-of-the-index' })), 'part of a composite key').to.be.instanceOf(LockConfigError);
    expect(await fail(createOrFind(accounts(), {}))).to.be.instanceOf(LockConfigError);
    const generated = await fail(createOrFind(accounts(), { id: 1 }, { email: 'pk@example.com' }));
    expect(generated).to.be.instanceOf(LockConfigError);
    expect(generated.message).to.contain('where.id is a generated column');
    expect(await fail(createOrFind(accounts(), { email: Like('%x') as never }))).to.be.instanceOf(LockConfigError);
    expect(await fail(createOrFind(accounts(), { email: null as never }))).to.be.instanceOf(LockConfigError);
    expect(await fail(createOrFind(accounts(), { nope: 1 } as never))).to.be.instanceOf(LockConfigError);
    expect(await fail(createOrFind({} as never, { email: 'x' }))).to.be.instanceOf(LockConfigError);
    expect(await accounts().countBy({ name: 'x' })).to.equal(0);
  });
});
