import { expect } from 'chai';
import { Table } from 'typeorm';
import { LockConfigError, StaleEntityError, addVersionColumn, dropVersionColumn, installLocking, transaction } from '../src';
import { race } from '../src/testing';
import { AddVersionToLegacyAccounts1760000000000 } from '../migrations/1760000000000-add-version-to-legacy-accounts';
import { BareCounter, Counter, CounterService, PlainCounter } from './fixtures/counter';
import { Board, Card, Unversionable } from './fixtures/optimistic-models';
import { createDataSource } from './support/backends';
import { describeEachBackend } from './support/suite';

const stale = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (e) => e,
  );

describeEachBackend('@Versioned', [Counter, PlainCounter, BareCounter, Board, Card], (env) => {
  const counters = () => env.ds.getRepository(Counter);

  async function seed(value = 0, name = 'c') {
    return counters().save(counters().create({ value, name }));
  }

  it('two loads, two saves: the second throws StaleEntityError and writes nothing', async () => {
    const { id } = await seed(0);
    const a = await counters().findOneByOrFail({ id });
    const b = await counters().findOneByOrFail({ id });
    expect(a.version).to.equal(1);

    a.value = 10;
    await counters().save(a);
    expect(a.version, 'the saved object holds the new version').to.equal(2);

    b.value = 20;
    b.name = 'b';
    const err = await stale(counters().save(b));
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(err.code).to.equal('STALE_ENTITY');
    expect(err.entity).to.equal('Counter');
    expect(err.id).to.deep.equal({ id });
    expect(err.expectedVersion).to.equal(1);
    expect(err.actualVersion).to.equal(2);
    expect(err.message).to.match(/Counter .* is stale: it was loaded at version 1 but the row is now at version 2/);
    expect(b.version, 'a failed save leaves the object as it was').to.equal(1);

    const row = await counters().findOneByOrFail({ id });
    expect(row).to.include({ value: 10, name: 'c', version: 2 });
  });

  it('a successful save leaves the new version in memory, so the next save of the same object works', async () => {
    const { id } = await seed(0);
    const c = await counters().findOneByOrFail({ id });
    for (let i = 1; i <= 3; i++) {
      c.value = i;
      await counters().save(c);
      expect(c.version).to.equal(i + 1);
    }
    expect(await counters().findOneByOrFail({ id })).to.include({ value: 3, version: 4 });
  });

  it('save(entity, { reload: false }) still leaves the new version in memory', async () => {
    const { id } = await seed(0);
    const c = await counters().findOneByOrFail({ id });
    c.value = 1;
    await counters().save(c, { reload: false });
    expect(c.version).to.equal(2);
    c.value = 2;
    await counters().save(c, { reload: false });
    expect(await counters().findOneByOrFail({ id })).to.include({ value: 2, version: 3 });
  });

  it('other generated columns (@UpdateDateColumn) are still reloaded after the checked UPDATE', async () => {
    const cards = env.ds.getRepository(Card);
    const boards = env.ds.getRepository(Board);
    const board = await boards.save(boards.create({ title: 'u', cards: [] }));
    const card = await cards.save(cards.create({ text: 'a', board }));
    // a concurrent write ormlock cannot see (raw SQL; update() of a @Versioned entity is refused): version 2, updated in 2000
    const column = (p: string) => env.ds.driver.escape(cards.metadata.findColumnWithPropertyName(p)!.databaseName);
    await env.ds.query(
      `UPDATE ${env.ds.driver.escape(cards.metadata.tableName)} SET ${column('updatedAt')} = '2000-06-01 00:00:00', ${column('version')} = ${column('version')} + 1 ` +
        `WHERE ${column('id')} = ${Number(card.id)}`,
    );
    const loaded = await cards.findOneByOrFail({ id: card.id });
    expect(loaded.updatedAt.getUTCFullYear()).to.equal(2000);
    loaded.text = 'b';
    await cards.save(loaded);
    expect(loaded.version).to.equal(3);
    expect(loaded.updatedAt.getUTCFullYear(), 'reloaded from the database').to.be.greaterThan(2000);
    const row = await cards.findOneByOrFail({ id: card.id });
    expect(loaded.updatedAt.getTime()).to.equal(row.updatedAt.getTime());
  });

  it('through the entity manager (also inside a transaction, which then rolls back)', async () => {
    const { id } = await seed(0);
    const a = await env.ds.manager.findOneByOrFail(Counter, { id });
    const b = await env.ds.manager.findOneByOrFail(Counter, { id });
    a.value = 1;
    await env.ds.manager.save(a);
    b.value = 2;
    expect(await stale(env.ds.manager.save(b))).to.be.instanceOf(StaleEntityError);

    const c = await env.ds.manager.findOneByOrFail(Counter, { id });
    const err = await stale(
      transaction(async () => {
        c.name = 'first write of the transaction';
        await env.ds.manager.save(c);
        b.value = 3; // still stale
        await env.ds.manager.save(b);
      }),
    );
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(await counters().findOneByOrFail({ id }), 'the whole transaction rolled back').to.include({ value: 1, name: 'c', version: 2 });
  });

  it('a stale object saved without changes is still a conflict (TypeORM would write its old version back)', async () => {
    const { id } = await seed(0);
    const a = await counters().findOneByOrFail({ id });
    const b = await counters().findOneByOrFail({ id });
    a.value = 5;
    await counters().save(a);
    expect(await stale(counters().save(b))).to.be.instanceOf(StaleEntityError);
    expect(await counters().findOneByOrFail({ id })).to.include({ value: 5, version: 2 });
  });

  it('control: TypeORM alone (@VersionColumn without @Versioned) loses the first update and writes the stale version back', async () => {
    const plain = env.ds.getRepository(PlainCounter);
    const { id } = await plain.save(plain.create({ value: 0 }));
    const a = await plain.findOneByOrFail({ id });
    const b = await plain.findOneByOrFail({ id });
    a.value = 10;
    await plain.save(a);
    b.name = 'b';
    await plain.save(b); // no error
    const row = await plain.findOneByOrFail({ id });
    expect(row.version, 'the stale version went back').to.equal(1);
  });

  it('cascaded save of a related versioned entity is checked too', async () => {
    const boards = env.ds.getRepository(Board);
    const cards = env.ds.getRepository(Card);
    const board = await boards.save(boards.create({ title: 'b', cards: [cards.create({ text: 'one' }), cards.create({ text: 'two' })] }));
    const loaded = await boards.findOneOrFail({ where: { id: board.id }, relations: { cards: true }, order: { cards: { id: 'ASC' } } });
    expect(loaded.cards.map((c) => c.version)).to.deep.equal([1, 1]);

    // someone else changes card one
    const other = await cards.findOneByOrFail({ id: loaded.cards[0].id });
    other.text = 'changed elsewhere';
    await cards.save(other);

    loaded.title = 'renamed';
    loaded.cards[0].text = 'stale edit';
    loaded.cards[1].text = 'fresh edit';
    const err = await stale(boards.save(loaded));
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(err.entity).to.equal('Card');
    expect(err.id).to.deep.equal({ id: loaded.cards[0].id });
    expect(err.expectedVersion).to.equal(1);

    const after = await boards.findOneOrFail({ where: { id: board.id }, relations: { cards: true }, order: { cards: { id: 'ASC' } } });
    expect(after.title, 'the cascade ran in one transaction that rolled back').to.equal('b');
    expect(after.cards.map((c) => [c.text, c.version])).to.deep.equal([
      ['changed elsewhere', 2],
      ['two', 1],
    ]);

    // reloaded, the same cascaded save goes through and bumps each changed card once
    after.cards[0].text = 'fresh';
    after.cards[1].text = 'fresh too';
    await boards.save(after);
    expect(after.cards.map((c) => c.version)).to.deep.equal([3, 2]);
    const final = await cards.find({ where: { board: { id: board.id } }, order: { id: 'ASC' } });
    expect(final.map((c) => [c.text, c.version])).to.deep.equal([
      ['fresh', 3],
      ['fresh too', 2],
    ]);
  });

  it('a new related entity inserted by cascade is not mistaken for a stale one', async () => {
    const boards = env.ds.getRepository(Board);
    const cards = env.ds.getRepository(Card);
    const board = await boards.save(boards.create({ title: 'new', cards: [] }));
    const loaded = await boards.findOneOrFail({ where: { id: board.id }, relations: { cards: true } });
    loaded.cards.push(cards.create({ text: 'added' }));
    await boards.save(loaded);
    expect(loaded.cards[0].version).to.equal(1);
    expect(await cards.countBy({ board: { id: board.id } })).to.equal(1);
  });

  it('[coverage typeorm @Versioned repository.remove checked] remove() of a stale entity throws StaleEntityError and the row stays', async () => {
    const { id } = await seed(0);
    const a = await counters().findOneByOrFail({ id });
    const b = await counters().findOneByOrFail({ id });
    a.value = 1;
    await counters().save(a);

    const err = await stale(counters().remove(b));
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(err).to.include({ entity: 'Counter', expectedVersion: 1, actualVersion: 2 });
    expect(err.message).to.contain('the remove wrote nothing');
    expect(b.id, 'the object keeps its id').to.equal(id);
    expect(await counters().countBy({ id })).to.equal(1);

    await counters().remove(a); // current version: removed
    expect(await counters().countBy({ id })).to.equal(0);
  });

  it('remove() of several entities in one statement checks each version', async () => {
    const x = await seed(0, 'x');
    const y = await seed(0, 'y');
    const [a, b] = await counters().find({ where: [{ id: x.id }, { id: y.id }], order: { id: 'ASC' } });
    const other = await counters().findOneByOrFail({ id: y.id });
    other.value = 9;
    await counters().save(other);
    const err = await stale(counters().remove([a, b]));
    expect(err).to.be.instanceOf(StaleEntityError);
    expect(err.id).to.deep.equal({ id: y.id });
    expect(err.actualVersion).to.equal(2);
    expect(await counters().countBy([{ id: x.id }, { id: y.id }]), 'remove() rolled its transaction back').to.equal(2);
  });

  it('remove() or save() of an object whose row was deleted meanwhile: StaleEntityError, not a silent no-op or re-insert', async () => {
    const { id } = await seed(7);
    const a = await counters().findOneByOrFail({ id });
    const b = await counters().findOneByOrFail({ id });
    await counters().remove(a);

    const removeErr = await stale(counters().remove(b));
    expect(removeErr).to.be.instanceOf(StaleEntityError);
    expect(removeErr.details.deleted).to.equal(true);
    expect(removeErr.message).to.contain('no longer exists');

    b.value = 8;
    const saveErr = await stale(counters().save(b));
    expect(saveErr).to.be.instanceOf(StaleEntityError);
    expect(saveErr.message).to.contain('no longer exists');
    expect(await counters().countBy({ id }), 'not inserted again').to.equal(0);
  });

  it('saving a versioned entity that was never loaded (no version) is a clear error, not an unconditional overwrite', async () => {
    const { id } = await seed(3);
    const err = await stale(counters().save({ id, value: 100 }));
    expect(err).to.be.instanceOf(LockConfigError);
    expect(err.message).to.contain('has no version value');
    expect(err.message).to.contain('repository.update');
    const removeErr = await stale(counters().remove(counters().create({ id })));
    expect(removeErr).to.be.instanceOf(LockConfigError);
    expect(await counters().findOneByOrFail({ id })).to.include({ value: 3, version: 1 });

    // a version value from elsewhere (e.g. a form's hidden field) is checked like a loaded one
    const fromForm = await stale(counters().save({ id, value: 100, version: 0 }));
    expect(fromForm).to.be.instanceOf(StaleEntityError);
    await counters().save({ id, value: 100, version: 1 });
    expect(await counters().findOneByOrFail({ id })).to.include({ value: 100, version: 2 });
  });

  it('round trips: a versioned save issues no more statements than an unversioned one, and the check is in the WHERE', async () => {
    async function statementsOfSave<T extends { value: number }>(repo: { findOneByOrFail(w: object): Promise<T>; save(e: T): Promise<T> }, id: number) {
      const entity = await repo.findOneByOrFail({ id });
      entity.value += 1;
      env.log.start();
      await repo.save(entity);
      return env.log.stop();
    }
    const versionedId = (await seed(0)).id;
    const plainRepo = env.ds.getRepository(PlainCounter);
    const bareRepo = env.ds.getRepository(BareCounter);
    const plainId = (await plainRepo.save(plainRepo.create({ value: 0 }))).id;
    const bareId = (await bareRepo.save(bareRepo.create({ value: 0 }))).id;

    const versioned = await statementsOfSave(counters(), versionedId);
    const plain = await statementsOfSave(plainRepo, plainId);
    const bare = await statementsOfSave(bareRepo, bareId);
    const update = versioned.find((q) => /^UPDATE/i.test(q))!;
    expect(update).to.match(/WHERE .*version\W* = /i);
    expect(versioned.length, `versioned: ${versioned.join(' | ')}\nTypeORM @VersionColumn: ${plain.join(' | ')}`).to.be.at.most(plain.length);
    expect(versioned.length, `versioned: ${versioned.join(' | ')}\nno version column: ${bare.join(' | ')}`).to.be.at.most(bare.length);

    // inside a transaction: just the UPDATE (save() diffs against the values the object was loaded with, no re-read)
    const inTx = await transaction(async () => {
      const c = await counters().findOneByOrFail({ id: versionedId });
      c.value += 1;
      env.log.start();
      await counters().save(c);
      return env.log.stop();
    });
    expect(inTx, inTx.join(' | ')).to.have.length(1);
  });

  it('[coverage typeorm @Versioned repository.save(update) checked] 20 concurrent increments with @Versioned + @RetryOnConflict: the count is exact', async () => {
    const N = 20;
    const { id } = await seed(0);
    const service = new CounterService(counters() as never);
    const results = await race(N, () => service.increment(id));
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).to.deep.equal([]);
    const row = await counters().findOneByOrFail({ id });
    expect(row.value).to.equal(N);
    expect(row.version).to.equal(N + 1);
    expect(service.calls, 'some attempts conflicted and were retried').to.be.greaterThan(N);
  });

  it('control: the same code on the unversioned twin loses increments', async () => {
    const N = 20;
    const plain = env.ds.getRepository(PlainCounter);
    const { id } = await plain.save(plain.create({ value: 0 }));
    const service = new CounterService(plain as never);
    const results = await race(N, () => service.increment(id));
    expect(results.filter((r) => r.status === 'rejected')).to.have.length(0);
    expect(service.calls, 'nothing conflicts, nothing is retried').to.equal(N);
    const row = await plain.findOneByOrFail({ id });
    expect(row.value, 'lost updates expected without @Versioned').to.be.lessThan(N);
  });
});

describeEachBackend('@Versioned configuration and the version-column migration', [Counter], (env) => {
  it('@Versioned on an entity without @VersionColumn: LockConfigError at installLocking, naming the entity and the fix', async () => {
    const ds = await createDataSource(env.name, [Unversionable], { fresh: false, poolSize: 2 });
    try {
      const err = await stale(installLocking(ds!));
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.entity).to.equal('Unversionable');
      expect(err.message).to.contain('@Versioned on Unversionable');
      expect(err.message).to.contain('@VersionColumn');
      expect(err.message).to.contain('addVersionColumn');
    } finally {
      await ds?.destroy();
    }
  });

  it('addVersionColumn: an existing table with rows gets a version column, every row at 1; dropVersionColumn undoes it', async () => {
    const qr = env.ds.createQueryRunner();
    try {
      await qr.dropTable('legacy_accounts', true);
      await qr.createTable(
        new Table({
          name: 'legacy_accounts',
          columns: [
            { name: 'id', type: 'int', isPrimary: true },
            { name: 'email', type: 'varchar', length: '100' },
          ],
        }),
      );
      for (let i = 1; i <= 3; i++) await qr.query(`INSERT INTO legacy_accounts (id, email) VALUES (${i}, 'u${i}@example.com')`);

      const migration = new AddVersionToLegacyAccounts1760000000000();
      await migration.up(qr);
      const rows = await qr.query('SELECT id, version FROM legacy_accounts ORDER BY id');
      expect(rows.map((r: { version: unknown }) => Number(r.version))).to.deep.equal([1, 1, 1]);
      await qr.query(`INSERT INTO legacy_accounts (id, email) VALUES (4, 'u4@example.com')`);
      const [fourth] = await qr.query('SELECT version FROM legacy_accounts WHERE id = 4');
      expect(Number(fourth.version), 'the default stays for writers that do not know the column').to.equal(1);
      const column = (await qr.getTable('legacy_accounts'))!.findColumnByName('version')!;
      expect(column.isNullable).to.equal(false);

      expect(await stale(migration.up(qr)), 'twice').to.be.instanceOf(LockConfigError);
      await migration.down(qr);
      expect((await qr.getTable('legacy_accounts'))!.findColumnByName('version')).to.equal(undefined);

      await addVersionColumn(qr, 'legacy_accounts', 'lock_version', { default: 0, keepDefault: false });
      const lv = (await qr.getTable('legacy_accounts'))!.findColumnByName('lock_version')!;
      expect(lv.default === undefined || lv.default === null, `default ${String(lv.default)}`).to.equal(true);
      const [first] = await qr.query('SELECT lock_version FROM legacy_accounts WHERE id = 1');
      expect(Number(first.lock_version)).to.equal(0);
      await dropVersionColumn(qr, 'legacy_accounts', 'lock_version');

      expect(await stale(addVersionColumn(qr, 'no_such_table'))).to.be.instanceOf(LockConfigError);
      expect(await stale(addVersionColumn(qr, 'legacy_accounts', 'version', { default: 1.5 }))).to.be.instanceOf(LockConfigError);
    } finally {
      await qr.dropTable('legacy_accounts', true).catch(() => undefined);
      await qr.release();
    }
  });
});
