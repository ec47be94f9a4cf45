import { expect } from 'chai';
import {
  AfterLoad,
  ChildEntity,
  Column,
  RelationId,
  TableInheritance,
  JoinColumn,
  UpdateDateColumn,
  VersionColumn,
  VirtualColumn,
  In,
  CreateDateColumn,
  DeleteDateColumn,
  Entity,
  EventSubscriber,
  ManyToOne,
  PrimaryColumn,
  PrimaryGeneratedColumn,
  type EntitySubscriberInterface,
  type LoadEvent,
} from 'typeorm';
import { RawSqlResultsToEntityTransformer } from 'typeorm/query-builder/transformer/RawSqlResultsToEntityTransformer';
import { lock, Pessimistic, transaction, withLock, withPessimistic } from '../src';
import { describeEachBackend } from './support/suite';

/**
 * The locked read by primary key prepared once per entity (lock(), withLock, @Pessimistic
 * findOne/findOneBy) against TypeORM's own read of the same row: equal entities — columns,
 * transformers, embedded columns, afterLoad listeners and subscribers — and the fallback to
 * TypeORM's query builder where the shape needs it (eager relations, operators, more options).
 */

class Money {
  @Column({ type: 'int' }) cents!: number;
  @Column({ type: 'varchar', length: 3 }) currency!: string;
}

const upper = { to: (v: string | undefined) => (v === undefined ? v : v.toLowerCase()), from: (v: string | null) => (v === null ? v : v.toUpperCase()) };

@Entity('fast_accounts')
class FastAccount {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 50, transformer: upper }) code!: string;
  @Column(() => Money) balance!: Money;
  @Column({ type: 'varchar', length: 50, select: false, nullable: true }) secret?: string;
  @Column({ type: 'int', nullable: true }) spare!: number | null;
  @CreateDateColumn() createdAt!: Date;
  @DeleteDateColumn() deletedAt?: Date | null;
  loadedBy?: string;
  @AfterLoad() markLoaded() {
    this.loadedBy = `afterLoad:${this.code}`;
  }
}

@Entity('fast_pairs')
class FastPair {
  @PrimaryColumn({ type: 'int' }) a!: number;
  @PrimaryColumn({ type: 'varchar', length: 20 }) b!: string;
  @Column({ type: 'int' }) n!: number;
}

@Entity('fast_owners')
class FastOwner {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 20 }) name!: string;
}

@Entity('fast_pets')
class FastPet {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 20 }) name!: string;
  @ManyToOne(() => FastOwner, { eager: true, nullable: true }) owner?: FastOwner | null;
}

enum Tier {
  Free = 'free',
  Gold = 'gold',
}

const cents = { to: (v: number | undefined) => (v === undefined ? v : Math.round(v * 100)), from: (v: number | null) => (v === null ? v : v / 100) };

/** Columns of many types (no listener of its own: the direct hydration without the entity's Load work). */
@Entity('fast_kinds')
class FastKinds {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'bigint' }) big!: string;
  @Column({ type: 'decimal', precision: 10, scale: 2 }) price!: string;
  @Column({ type: 'float' }) ratio!: number;
  @Column({ type: 'boolean' }) flag!: boolean;
  @Column({ type: 'date' }) day!: string;
  @Column({ type: 'text' }) note!: string;
  @Column({ type: 'varchar', length: 20, nullable: true }) empty!: string | null;
  @Column({ type: 'simple-json' }) doc!: { a: number; b: string[] };
  @Column({ type: 'simple-array' }) tags!: string[];
  @Column({ type: 'simple-enum', enum: Tier }) tier!: Tier;
  @Column({ type: 'int', transformer: cents }) amount!: number;
  @Column({ type: 'varchar', length: 20, name: 'renamed_col' }) renamed!: string;
  @UpdateDateColumn() updatedAt!: Date;
  @VersionColumn() version!: number;
}

/** A listener that waits: TypeORM awaits it before the read returns, so must the prepared read. */
@Entity('fast_async_loads')
class FastAsyncLoad {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 20 }) name!: string;
  seen?: string;
  @AfterLoad() async settle() {
    await new Promise((r) => setImmediate(r));
    this.seen = `late:${this.name}`;
  }
}

/** A (not eager) relation with its key as a column of its own: hydrated directly, the Load event still broadcast. */
@Entity('fast_tags')
class FastTag {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int', nullable: true }) ownerId!: number | null;
  @ManyToOne(() => FastOwner, { nullable: true }) @JoinColumn({ name: 'ownerId' }) owner?: FastOwner | null;
}

/** A virtual-property column (a sub-select): not a shape the direct hydration covers, TypeORM's transformer runs. */
@Entity('fast_virtuals')
class FastVirtual {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) n!: number;
  @VirtualColumn({ query: (alias) => `SELECT ${alias}.n * 2` }) twice!: number;
}

/** @RelationId: no prepared read (TypeORM's builder loads the ids). */
@Entity('fast_labelled')
class FastLabelled {
  @PrimaryGeneratedColumn() id!: number;
  @ManyToOne(() => FastOwner, { nullable: true }) owner?: FastOwner | null;
  @RelationId((l: FastLabelled) => l.owner) ownerId!: number | null;
}

/** Single-table inheritance: no prepared read for the parent (its rows may be children) nor the child. */
@Entity('fast_shapes')
@TableInheritance({ column: { type: 'varchar', length: 20, name: 'kind' } })
class FastShape {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 20 }) label!: string;
}

@ChildEntity('circle')
class FastCircle extends FastShape {
  @Column({ type: 'int', nullable: true }) radius!: number | null;
}

const loads: string[] = [];
@EventSubscriber()
class FastLoads implements EntitySubscriberInterface<FastAccount> {
  listenTo() {
    return FastAccount;
  }
  afterLoad(entity: FastAccount, event?: LoadEvent<FastAccount>) {
    loads.push(`${entity.id}:${entity.code}:${event?.queryRunner ? 'qr' : 'none'}`);
  }
}

describeEachBackend(
  "locked reads by primary key (prepared) vs TypeORM's own",
  [FastAccount, FastPair, FastOwner, FastPet, FastKinds, FastAsyncLoad, FastTag, FastVirtual, FastLabelled, FastShape, FastCircle],
  (env) => {
    /** TypeORM's own locked read of the row, in a transaction of its own. */
    async function ormOwn<T extends object>(target: new () => T, where: Record<string, unknown>): Promise<T | null> {
      return env.ds.transaction((em) => em.findOne(target, { where, lock: { mode: 'pessimistic_write' } } as never) as Promise<T | null>);
    }

    /** Statements sent while `fn` runs. */
    async function logged<T>(fn: () => Promise<T>): Promise<{ value: T; sql: string[] }> {
      env.log.start();
      try {
        const value = await fn();
        return { value, sql: env.log.stop() };
      } catch (error) {
        env.log.stop();
        throw error;
      }
    }

    /** Runs `fn` counting the calls of TypeORM's row transformer (the fallback path; the direct hydration does not use it). */
    async function countingTransforms<T>(fn: () => Promise<T>): Promise<{ value: T; transforms: number }> {
      const proto = RawSqlResultsToEntityTransformer.prototype as unknown as { transform: (...a: unknown[]) => unknown };
      const original = Object.getOwnPropertyDescriptor(proto, 'transform')!;
      let transforms = 0;
      proto.transform = function (this: unknown, ...args: unknown[]) {
        transforms++;
        return (original.value as (...a: unknown[]) => unknown).apply(this, args);
      };
      try {
        return { value: await fn(), transforms };
      } finally {
        Object.defineProperty(proto, 'transform', original);
      }
    }

    async function seedAccount(): Promise<FastAccount> {
      const repo = env.ds.getRepository(FastAccount);
      return repo.save(repo.create({ code: 'eur-7', balance: { cents: 1234, currency: 'EUR' }, secret: 'hidden', spare: null }));
    }

    it('@Pessimistic findOneBy / findOne by id: the prepared read returns what TypeORM returns (columns, transformer, embedded, dates, hidden column, afterLoad, subscriber)', async () => {
      const saved = await seedAccount();
      const repo = env.ds.getRepository(FastAccount);
      loads.length = 0;
      const own = await ormOwn(FastAccount, { id: saved.id });
      const ownLoads = loads.splice(0);
      const { value: fast, sql } = await logged(() => withPessimistic(() => repo.findOneBy({ id: saved.id })));
      const fastLoads = loads.splice(0);
      expect(sql.join('\n')).to.match(/ormlock_fast_accounts/); // the prepared statement, not the find options'
      expect(sql.join('\n')).to.match(/FOR UPDATE/);
      expect(fast).to.be.instanceOf(FastAccount);
      expect(fast).to.deep.equal(own);
      expect(fast!.code).to.equal('EUR-7');
      expect(fast!.balance).to.be.instanceOf(Money);
      expect(fast!.secret).to.equal(undefined);
      expect(fast!.loadedBy).to.equal('afterLoad:EUR-7');
      expect(ownLoads, "the subscriber hears TypeORM's own load").to.have.length(1);
      expect(fastLoads).to.deep.equal(ownLoads);
      const { value: viaFindOne } = await logged(() => withPessimistic(() => repo.findOne({ where: { id: saved.id } })));
      expect(viaFindOne).to.deep.equal(own);
      // no row: null, as TypeORM's; findOneByOrFail still throws TypeORM's EntityNotFoundError
      expect(await withPessimistic(() => repo.findOneBy({ id: 987654 }))).to.equal(null);
      const err = await withPessimistic(() => repo.findOneByOrFail({ id: 987654 })).then(
        () => null,
        (e) => e,
      );
      expect(err?.name).to.equal('EntityNotFoundError');
    });

    it('every common read shape by primary key takes the prepared read, and returns what TypeORM returns: repository and manager findOneBy / findOneByOrFail / findOne / findOneOrFail, and a @Pessimistic method on an injected repository', async () => {
      const saved = await seedAccount();
      const repo = env.ds.getRepository(FastAccount);
      const own = await ormOwn(FastAccount, { id: saved.id });
      const where = { id: saved.id };
      const shapes: Array<[string, () => Promise<unknown>]> = [
        ['repo.findOneBy', () => repo.findOneBy(where)],
        ['repo.findOneByOrFail', () => repo.findOneByOrFail(where)],
        ['repo.findOne({ where })', () => repo.findOne({ where })],
        ['repo.findOneOrFail({ where })', () => repo.findOneOrFail({ where })],
        ['manager.findOneBy', () => env.ds.manager.findOneBy(FastAccount, where)],
        ['manager.findOneByOrFail', () => env.ds.manager.findOneByOrFail(FastAccount, where)],
        ['manager.findOne({ where })', () => env.ds.manager.findOne(FastAccount, { where })],
        ['manager.findOneOrFail({ where })', () => env.ds.manager.findOneOrFail(FastAccount, { where })],
      ];
      // the bench's shape: a service whose repository was obtained before the call
      class Accounts {
        constructor(private readonly accounts: typeof repo) {}
        @Pessimistic()
        async read(id: number) {
          return this.accounts.findOneByOrFail({ id });
        }
      }
      const service = new Accounts(repo);
      for (const [name, read] of [
        ...shapes.map(([n, r]): [string, () => Promise<unknown>] => [n, () => withPessimistic(r)]),
        ['@Pessimistic method', () => service.read(saved.id)] as [string, () => Promise<unknown>],
      ]) {
        const { value, sql } = await logged(read);
        const selects = sql.filter((q) => /^\s*SELECT/i.test(q));
        expect(selects, `${name}: one SELECT`).to.have.length(1);
        expect(selects[0], `${name}: the prepared statement`).to.match(/ormlock_fast_accounts/);
        expect(selects[0], `${name}: locked`).to.match(/FOR UPDATE/);
        expect(value, name).to.be.instanceOf(FastAccount);
        expect(value, name).to.deep.equal(own);
      }
    });

    it("a soft-deleted row is not found by the prepared read either (TypeORM's own condition is in its statement)", async () => {
      const saved = await seedAccount();
      const repo = env.ds.getRepository(FastAccount);
      await repo.softDelete({ id: saved.id });
      expect(await ormOwn(FastAccount, { id: saved.id })).to.equal(null);
      expect(await withPessimistic(() => repo.findOneBy({ id: saved.id }))).to.equal(null);
      const err = await transaction(() => lock(saved)).then(
        () => null,
        (e) => e,
      );
      expect(err?.name).to.equal('StaleEntityError');
    });

    it('lock() and withLock refresh the object with what TypeORM would read (a composite key too)', async () => {
      const saved = await seedAccount();
      const repo = env.ds.getRepository(FastAccount);
      await repo.update({ id: saved.id }, { balance: { cents: 99, currency: 'USD' }, code: 'usd-1', spare: 5 });
      const own = await ormOwn(FastAccount, { id: saved.id });
      const stale = repo.create({ id: saved.id });
      await transaction(() => lock(stale));
      for (const key of ['id', 'code', 'balance', 'spare', 'createdAt'] as const) expect(stale[key], key).to.deep.equal(own![key]);
      await withLock(repo.create({ id: saved.id }), async (locked) => {
        expect(locked.code).to.equal('USD-1');
        expect(locked.balance).to.deep.equal(own!.balance);
      });

      const pairs = env.ds.getRepository(FastPair);
      await pairs.save(pairs.create({ a: 1, b: `k${process.pid}`, n: 41 }));
      const pair = pairs.create({ a: 1, b: `k${process.pid}` });
      const { sql } = await logged(() => transaction(() => lock(pair)));
      expect(pair.n).to.equal(41);
      expect(sql.join('\n')).to.match(/FOR UPDATE/);
      const viaFind = await withPessimistic(() => pairs.findOneBy({ a: 1, b: `k${process.pid}` }));
      expect(viaFind).to.deep.equal(await ormOwn(FastPair, { a: 1, b: `k${process.pid}` }));
    });

    it("falls back to TypeORM's own read where the shape needs it: eager relations, an operator, more options", async () => {
      const owners = env.ds.getRepository(FastOwner);
      const pets = env.ds.getRepository(FastPet);
      const owner = await owners.save(owners.create({ name: 'ann' }));
      const pet = await pets.save(pets.create({ name: 'rex', owner }));
      const own = await env.ds.transaction((em) => em.findOne(FastPet, { where: { id: pet.id }, relations: { owner: true } }));
      if (env.handle.dialect.capabilities.lockOf) {
        const { value, sql } = await logged(() => withPessimistic(() => pets.findOneBy({ id: pet.id })));
        expect(value).to.deep.equal(own);
        expect(value!.owner?.name).to.equal('ann');
        expect(sql.join('\n')).to.not.match(/ormlock_fast_pets/); // TypeORM's statement (with the eager join)
      } else {
        // MariaDB cannot lock a join without locking every joined row: refused, as before
        const err = await withPessimistic(() => pets.findOneBy({ id: pet.id })).then(
          () => null,
          (e) => e,
        );
        expect(err?.name).to.equal('LockConfigError');
      }
      const repo = env.ds.getRepository(FastAccount);
      const saved = await seedAccount();
      const { sql } = await logged(() => withPessimistic(() => repo.findOne({ where: { id: saved.id }, select: { id: true, code: true } })));
      expect(sql.join('\n')).to.not.match(/ormlock_fast_accounts/);
      expect(sql.join('\n')).to.match(/FOR UPDATE/);
      const { value: viaIn, sql: inSql } = await logged(() => withPessimistic(() => repo.findOneBy({ id: In([saved.id]) })));
      expect(inSql.join('\n')).to.not.match(/ormlock_fast_accounts/);
      expect(viaIn).to.deep.equal(await ormOwn(FastAccount, { id: saved.id }));
    });

    it("columns of many types, a renamed column, transformers, version and dates: hydrated without TypeORM's transformer, equal to TypeORM's entity", async () => {
      const repo = env.ds.getRepository(FastKinds);
      const saved = await repo.save(
        repo.create({
          big: '9007199254740993',
          price: '12.34',
          ratio: 0.5,
          flag: true,
          day: '2026-12-04',
          note: 'x'.repeat(300),
          empty: null,
          doc: { a: 1, b: ['c', 'd'] },
          tags: ['p', 'q'],
          tier: Tier.Gold,
          amount: 12.5,
          renamed: 'r',
        }),
      );
      const own = await ormOwn(FastKinds, { id: saved.id });
      for (const [name, read] of [
        ['findOneBy', () => withPessimistic(() => repo.findOneBy({ id: saved.id }))],
        ['findOne', () => withPessimistic(() => repo.findOne({ where: { id: saved.id } }))],
        ['{ timeoutMs }', () => withPessimistic(() => repo.findOneBy({ id: saved.id }), { timeoutMs: 2000 })],
      ] as Array<[string, () => Promise<FastKinds | null>]>) {
        const { value, transforms } = await countingTransforms(() => logged(read));
        expect(value.sql.join('\n'), name).to.match(/ormlock_fast_kinds/);
        expect(transforms, `${name}: direct hydration`).to.equal(0);
        expect(value.value, name).to.be.instanceOf(FastKinds);
        expect(value.value, name).to.deep.equal(own);
      }
      expect(own!.amount).to.equal(12.5);
      expect(own!.renamed).to.equal('r');
      const stale = repo.create({ id: saved.id });
      const { transforms } = await countingTransforms(() => transaction(() => lock(stale)));
      expect(transforms, 'lock(): direct hydration').to.equal(0);
      for (const key of Object.keys(own!) as Array<keyof FastKinds>) expect(stale[key], key).to.deep.equal(own![key]);
    });

    it('afterLoad listeners and subscribers: called as TypeORM calls them, an async listener awaited before the read returns', async () => {
      const saved = await seedAccount();
      const repo = env.ds.getRepository(FastAccount);
      loads.length = 0;
      const own = await ormOwn(FastAccount, { id: saved.id });
      const ownLoads = loads.splice(0);
      const { value: fast, transforms } = await countingTransforms(() => withPessimistic(() => repo.findOneBy({ id: saved.id })));
      expect(transforms).to.equal(0);
      expect(fast).to.deep.equal(own);
      expect(loads.splice(0)).to.deep.equal(ownLoads);

      const asyncRepo = env.ds.getRepository(FastAsyncLoad);
      const a = await asyncRepo.save(asyncRepo.create({ name: 'slow' }));
      const ownAsync = await ormOwn(FastAsyncLoad, { id: a.id });
      expect(ownAsync!.seen).to.equal('late:slow');
      const { value: fastAsync, transforms: t2 } = await countingTransforms(() => withPessimistic(() => asyncRepo.findOneBy({ id: a.id })));
      expect(t2).to.equal(0);
      expect(fastAsync).to.deep.equal(ownAsync);
    });

    it('a not-eager relation: the row is hydrated directly (its key column set, the relation left unloaded), as TypeORM does', async () => {
      const owners = env.ds.getRepository(FastOwner);
      const tags = env.ds.getRepository(FastTag);
      const owner = await owners.save(owners.create({ name: 'bo' }));
      const tag = await tags.save(tags.create({ ownerId: owner.id }));
      const orphan = await tags.save(tags.create({ ownerId: null }));
      for (const id of [tag.id, orphan.id]) {
        const own = await ormOwn(FastTag, { id });
        const { value, transforms } = await countingTransforms(() => withPessimistic(() => tags.findOneBy({ id })));
        expect(transforms).to.equal(0);
        expect(value).to.deep.equal(own);
        expect(value).to.not.have.property('owner');
      }
    });

    it("a virtual-property column: TypeORM's transformer turns the row into the entity (the fallback), equal to TypeORM's", async () => {
      const repo = env.ds.getRepository(FastVirtual);
      const saved = await repo.save(repo.create({ n: 21 }));
      const own = await ormOwn(FastVirtual, { id: saved.id });
      const { value, transforms } = await countingTransforms(() => logged(() => withPessimistic(() => repo.findOneBy({ id: saved.id }))));
      expect(transforms).to.be.greaterThan(0);
      expect(value.value).to.deep.equal(own);
      // TypeORM 0.3.20 selects no virtual property in a plain select(alias): both have none there
      if (own!.twice !== undefined) expect(Number(value.value!.twice)).to.equal(42);
    });

    it("@RelationId and table inheritance: TypeORM's own read (no prepared statement), equal to TypeORM's", async () => {
      const owners = env.ds.getRepository(FastOwner);
      const owner = await owners.save(owners.create({ name: 'cy' }));
      const labelled = env.ds.getRepository(FastLabelled);
      const l = await labelled.save(labelled.create({ owner }));
      const circles = env.ds.getRepository(FastCircle);
      const c = await circles.save(circles.create({ label: 'round', radius: 3 }));
      const cases: Array<[string, () => Promise<unknown>, () => Promise<unknown>]> = [
        ['@RelationId', () => ormOwn(FastLabelled, { id: l.id }), () => labelled.findOneBy({ id: l.id })],
        ['child entity', () => ormOwn(FastCircle, { id: c.id }), () => circles.findOneBy({ id: c.id })],
        ['parent entity', () => ormOwn(FastShape, { id: c.id }), () => env.ds.getRepository(FastShape).findOneBy({ id: c.id })],
      ];
      for (const [name, own, read] of cases) {
        const expected = await own();
        const { value, sql } = await logged(() => withPessimistic(read));
        expect(sql.join('\n'), name).to.not.match(/ormlock_fast/);
        expect(sql.join('\n'), name).to.match(/FOR UPDATE/);
        expect(value, name).to.deep.equal(expected);
      }
      const parentRead = await withPessimistic(() => env.ds.getRepository(FastShape).findOneBy({ id: c.id }));
      expect(parentRead).to.be.instanceOf(FastCircle);
      expect((await withPessimistic(() => labelled.findOneBy({ id: l.id })))!.ownerId).to.equal(owner.id);
    });

    it("no row, a soft-deleted row: null from the direct hydration too (and findOneByOrFail throws TypeORM's error)", async () => {
      const repo = env.ds.getRepository(FastAccount);
      const saved = await seedAccount();
      await repo.softDelete({ id: saved.id });
      for (const id of [saved.id, 987655]) {
        const { value, transforms } = await countingTransforms(() => withPessimistic(() => repo.findOneBy({ id })));
        expect(value).to.equal(null);
        expect(transforms).to.equal(0);
        const bounded = await withPessimistic(() => repo.findOneBy({ id }), { timeoutMs: 2000 });
        expect(bounded).to.equal(null);
        const err = await withPessimistic(() => repo.findOneByOrFail({ id })).then(
          () => null,
          (e) => e,
        );
        expect(err?.name).to.equal('EntityNotFoundError');
      }
    });

    it('{ timeoutMs } on the prepared read: one statement, and a held row times out within the limit', async function () {
      const saved = await seedAccount();
      const repo = env.ds.getRepository(FastAccount);
      const { sql } = await logged(() => withPessimistic(() => repo.findOneBy({ id: saved.id }), { timeoutMs: 400 }));
      expect(
        sql.filter((q) => /lock_timeout|innodb_lock_wait_timeout/.test(q) && !/FOR UPDATE/.test(q)),
        sql.join('\n'),
      ).to.deep.equal([]);
      let release!: () => void;
      const holding = new Promise<void>((r) => (release = r));
      let held!: () => void;
      const isHeld = new Promise<void>((r) => (held = r));
      const holder = transaction(async () => {
        await lock(repo.create({ id: saved.id }));
        held();
        await holding;
      });
      await isHeld;
      try {
        const started = Date.now();
        const err = await withPessimistic(() => repo.findOneBy({ id: saved.id }), { timeoutMs: 400 }).then(
          () => null,
          (e) => e,
        );
        expect(err?.name).to.equal('LockTimeoutError');
        expect(Date.now() - started).to.be.lessThan(env.name === 'postgres' ? 3000 : 4000);
      } finally {
        release();
        await holder;
      }
    });
  },
  { subscribers: [FastLoads], dropSchemaAfter: true },
);
