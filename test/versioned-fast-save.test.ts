import { expect } from 'chai';
import {
  BeforeUpdate,
  Column,
  Entity,
  EventSubscriber,
  ManyToOne,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
  VersionColumn,
  type EntitySubscriberInterface,
  type Repository,
  type UpdateEvent,
} from 'typeorm';
import { SubjectExecutor } from 'typeorm/persistence/SubjectExecutor';
import { StaleEntityError, transaction, Versioned } from '../src';
import { forceTypeormSave } from '../src/orm/typeorm/internals/versioned-fast-save';
import { describeEachBackend, type SuiteEnv } from './support/suite';

/**
 * save() of one loaded @Versioned object as one checked UPDATE (src/orm/typeorm/internals/
 * versioned-fast-save.ts), compared with TypeORM's own path (forced): the row, the object, the
 * return value, the StaleEntityError and the statements are the same; every shape the fast path
 * does not handle really goes TypeORM's way.
 */

@Versioned()
@Entity('fs_accounts')
class FsAccount {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 50 }) owner!: string;
  @Column({ type: 'int' }) credits!: number;
  @Column({ type: 'timestamp', nullable: true }) touchedAt!: Date | null;
  @Column({ type: 'varchar', length: 50, nullable: true }) label!: string | null;
  @Column({ type: 'varchar', length: 50, select: false, nullable: true }) note?: string | null;
  /** Stored upper-case, loaded lower-case. */
  @Column({
    type: 'varchar',
    length: 20,
    nullable: true,
    transformer: { to: (v?: string | null) => v?.toUpperCase() ?? v, from: (v: string | null) => v?.toLowerCase() ?? v },
  })
  code!: string | null;
  @UpdateDateColumn() updatedAt!: Date;
  @VersionColumn() version!: number;
}

@Versioned()
@Entity('fs_listened')
class FsListened {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) credits!: number;
  @Column({ type: 'int', default: 0 }) touched!: number;
  @VersionColumn() version!: number;
  @BeforeUpdate() touch() {
    this.touched++;
  }
}

@Versioned()
@Entity('fs_watched')
class FsWatched {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) credits!: number;
  @VersionColumn() version!: number;
}

class FsMoney {
  @Column({ type: 'int' }) amount!: number;
  @Column({ type: 'varchar', length: 3 }) currency!: string;
}

@Versioned()
@Entity('fs_embedded')
class FsEmbedded {
  @PrimaryGeneratedColumn() id!: number;
  @Column(() => FsMoney) balance!: FsMoney;
  @Column({ type: 'int' }) credits!: number;
  @VersionColumn() version!: number;
}

@Versioned()
@Entity('fs_transformed')
class FsTransformed {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 20, transformer: { to: (v: number) => String(v), from: (v: string) => Number(v) } }) credits!: number;
  @VersionColumn() version!: number;
}

@Entity('fs_owners')
class FsOwner {
  @PrimaryGeneratedColumn() id!: number;
}

@Versioned()
@Entity('fs_related')
class FsRelated {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) credits!: number;
  @ManyToOne(() => FsOwner, { nullable: true }) owner!: FsOwner | null;
  @VersionColumn() version!: number;
}

const watched: string[][] = [];
@EventSubscriber()
class FsWatcher implements EntitySubscriberInterface<FsWatched> {
  listenTo() {
    return FsWatched;
  }
  afterUpdate(event: UpdateEvent<FsWatched>) {
    watched.push(event.updatedColumns.map((c) => c.propertyName));
  }
}

/** TypeORM's executor runs (TypeORM's path) how many times while `fn` runs. */
async function executorRuns(fn: () => Promise<unknown>): Promise<number> {
  const proto = SubjectExecutor.prototype as any;
  const base = proto.execute;
  let runs = 0;
  proto.execute = function (this: unknown, ...args: unknown[]) {
    runs++;
    return base.apply(this, args);
  };
  try {
    await fn();
  } finally {
    proto.execute = base;
  }
  return runs;
}

/** What each statement is (its first word, or START for a transaction start). */
const kinds = (sql: string[]) => sql.map((q) => q.trim().split(/\s+/)[0].toUpperCase());

interface Outcome {
  runs: number;
  statements: string[];
  object: Record<string, unknown>;
  row: Record<string, unknown>;
  returnedTheObject: boolean;
  /**
   * A save that wrote: the object's updatedAt is the row's. A stale one: the object's updatedAt is
   * what it was before the save (the row's is another writer's). The seeded row's date is in the past,
   * so no save's date can equal it by chance.
   */
  updatedAt: 'the row’s' | 'kept' | 'other';
  error?: Record<string, unknown>;
}

type Path = 'fast' | 'typeorm';

function plain(o: object): Record<string, unknown> {
  const { id: _id, updatedAt: _u, ...rest } = o as Record<string, unknown>;
  return JSON.parse(JSON.stringify(rest));
}

/** Seeds a row, loads it, changes it with `change`, and saves it with `save` on the given path. */
async function outcome(
  env: SuiteEnv,
  path: Path,
  change: (o: FsAccount) => void,
  save: (repo: Repository<FsAccount>, o: FsAccount) => Promise<unknown>,
  opts: { stale?: boolean; again?: boolean } = {},
): Promise<Outcome> {
  const repo = env.ds.getRepository(FsAccount);
  const { id } = await repo.save(
    repo.create({ owner: `o${process.pid}`, credits: 10, touchedAt: new Date('2024-01-02T03:04:05Z'), label: 'l', note: 'n', code: 'abc' }),
  );
  // an update date no save can write again: a save sets CURRENT_TIMESTAMP, which on MariaDB has whole
  // seconds, and the seeded date (now, in microseconds) ends in .000 one time in a thousand, so an object
  // whose date was not read back could still equal the row's (the two paths then disagreed)
  const q = env.name === 'postgres' ? 'UPDATE "fs_accounts" SET "updatedAt" = $1 WHERE "id" = $2' : 'UPDATE `fs_accounts` SET `updatedAt` = ? WHERE `id` = ?';
  await env.ds.query(q, [new Date('2020-01-02T03:04:05.123Z'), id]);
  const all = { id: true, owner: true, credits: true, touchedAt: true, label: true, note: true, code: true, updatedAt: true, version: true } as const;
  // saved again: loaded with every column (a snapshot without the select: false one is not refreshed after a save)
  const obj = opts.again ? await repo.findOneOrFail({ where: { id }, select: all }) : await repo.findOneByOrFail({ id });
  if (opts.again) {
    obj.credits += 100;
    await repo.save(obj); // the first save: the fast path on both (the path forced below is the second's)
  }
  if (opts.stale) await repo.save(Object.assign(await repo.findOneByOrFail({ id }), { owner: 'someone else' }));
  change(obj);
  const updatedAtBefore = obj.updatedAt instanceof Date ? obj.updatedAt.getTime() : undefined;
  forceTypeormSave(path === 'typeorm');
  let returned: unknown;
  let error: any;
  env.log.start();
  let runs: number;
  try {
    runs = await executorRuns(() =>
      save(repo, obj).then(
        (r) => (returned = r),
        (e) => (error = e),
      ),
    );
  } finally {
    forceTypeormSave(false);
  }
  const statements = kinds(env.log.stop());
  const row = await repo.findOneOrFail({ where: { id }, select: all });
  return {
    runs,
    statements,
    object: plain(obj),
    row: plain(row),
    returnedTheObject: returned === obj,
    updatedAt: updatedAtAfter(obj.updatedAt, opts.stale ? updatedAtBefore : row.updatedAt.getTime(), opts.stale ? 'kept' : 'the row’s'),
    error: error && {
      stale: error instanceof StaleEntityError,
      message: String(error.message).replace(new RegExp(`"id":${id}\\b`, 'g'), '"id":ID'),
      expectedVersion: error.expectedVersion,
      actualVersion: error.actualVersion,
      deleted: error.deleted,
    },
  };
}

/** `same` when the object's updatedAt is the time `expected` (ms), else 'other'. */
function updatedAtAfter(value: unknown, expected: number | undefined, same: 'the row’s' | 'kept'): Outcome['updatedAt'] {
  return value instanceof Date && value.getTime() === expected ? same : 'other';
}

/** The outcome on both paths: equal but for the executor (TypeORM's runs only on its path). */
async function compare(
  env: SuiteEnv,
  change: (o: FsAccount) => void,
  save: (repo: Repository<FsAccount>, o: FsAccount) => Promise<unknown> = (repo, o) => repo.save(o),
  opts: { stale?: boolean; again?: boolean } = {},
): Promise<Outcome> {
  const fast = await outcome(env, 'fast', change, save, opts);
  const slow = await outcome(env, 'typeorm', change, save, opts);
  expect(fast.runs, 'the fast path skips TypeORM’s executor').to.equal(0);
  expect(slow.runs, 'the forced path is TypeORM’s').to.be.greaterThan(0);
  const { runs: _f, ...fastRest } = fast;
  const { runs: _s, ...slowRest } = slow;
  expect(fastRest).to.deep.equal(slowRest);
  return fast;
}

describeEachBackend(
  '@Versioned save() as one checked UPDATE (fast path)',
  [FsAccount, FsListened, FsWatched, FsEmbedded, FsTransformed, FsOwner, FsRelated],
  (env) => {
    const withUpdateDateReadBack = () => (env.name === 'mariadb' ? ['SELECT'] : []);

    it("a changed column: one UPDATE in save()'s own transaction; row, object, return value and statements as TypeORM's", async () => {
      const fast = await compare(env, (o) => (o.credits -= 3));
      expect(fast.statements).to.deep.equal(['START', 'UPDATE', ...withUpdateDateReadBack(), 'COMMIT']);
      expect(fast.object).to.include({ credits: 7, version: 2 });
      expect(fast.updatedAt).to.equal('the row’s');
      expect(fast.returnedTheObject).to.equal(true);
    });

    it('several columns, a date changed in place, a nullable set to null, through the entity manager', async () => {
      const fast = await compare(
        env,
        (o) => {
          o.owner = 'new owner';
          o.touchedAt!.setUTCFullYear(2025);
          o.label = null;
        },
        (repo, o) => repo.manager.save(o),
      );
      expect(fast.row).to.include({ owner: 'new owner', label: null, version: 2 });
      expect(fast.row.touchedAt).to.match(/^2025-01-02/);
    });

    it('a column with a transformer: written through it, the object keeps the value as given', async () => {
      const fast = await compare(env, (o) => (o.code = 'xyz'));
      expect(fast.row.code).to.equal('xyz');
      expect(fast.object).to.include({ code: 'xyz', version: 2 });
      const q = env.name === 'postgres' ? 'SELECT "code" FROM "fs_accounts" WHERE "code" = $1' : 'SELECT `code` FROM `fs_accounts` WHERE `code` = ?';
      expect(await env.ds.query(q, ['XYZ'])).to.have.length(2); // both paths' rows, stored upper-case
    });

    it('the column not loaded (select: false) stays as it was; the object gets null for it, as after TypeORM’s save', async () => {
      const fast = await compare(env, (o) => (o.credits = 1));
      expect(fast.row.note).to.equal('n');
      expect(fast.object.note).to.equal(null);
    });

    it('reload: false (the version still moves on the object, the update date is not read back); listeners: false; transaction: false', async () => {
      const noReload = await compare(
        env,
        (o) => (o.credits = 2),
        (repo, o) => repo.save(o, { reload: false }),
      );
      expect(noReload.statements).to.deep.equal(['START', 'UPDATE', 'COMMIT']);
      expect(noReload.object.version).to.equal(2);
      await compare(
        env,
        (o) => (o.credits = 3),
        (repo, o) => repo.save(o, { listeners: false }),
      );
      const noTx = await compare(
        env,
        (o) => (o.credits = 4),
        (repo, o) => repo.save(o, { transaction: false }),
      );
      expect(noTx.statements).to.deep.equal(['UPDATE', ...withUpdateDateReadBack()]);
    });

    it('inside a transaction: joins it (no START/COMMIT of its own)', async () => {
      const fast = await compare(
        env,
        (o) => (o.credits = 5),
        (repo, o) => transaction(() => repo.save(o)),
      );
      expect(fast.statements.filter((k) => k === 'UPDATE')).to.have.length(1);
      expect(fast.object.version).to.equal(2);
    });

    it('a stale object: the same StaleEntityError, nothing written, the same statements', async () => {
      const fast = await compare(env, (o) => (o.credits = 0), undefined, { stale: true });
      expect(fast.error).to.deep.include({ stale: true, expectedVersion: 1, actualVersion: 2 });
      expect(fast.row).to.include({ owner: 'someone else', credits: 10, version: 2 });
      expect(fast.statements).to.include('ROLLBACK');
    });

    it('a statement the database refuses: the same error, rolled back, nothing written', async () => {
      const fast = await compare(env, (o) => {
        o.credits = 0;
        o.owner = 'x'.repeat(60); // longer than varchar(50)
      });
      expect(fast.error).to.include({ stale: false });
      expect(fast.row).to.include({ credits: 10, version: 1 });
    });

    it('the next save of the same object takes the fast path again and is checked against the new version', async () => {
      const fast = await outcome(
        env,
        'fast',
        (o) => (o.credits = 8),
        (repo, o) => repo.save(o),
        { again: true },
      );
      const slow = await outcome(
        env,
        'typeorm',
        (o) => (o.credits = 8),
        (repo, o) => repo.save(o),
        { again: true },
      );
      expect(fast.runs).to.equal(0);
      expect(fast.statements).to.deep.equal(['START', 'UPDATE', ...withUpdateDateReadBack(), 'COMMIT']);
      expect(fast.object).to.deep.equal(slow.object);
      expect(fast.row).to.deep.equal(slow.row);
      expect(fast.row).to.include({ credits: 8, version: 3 });

      const stale = await outcome(
        env,
        'fast',
        (o) => (o.credits = 9),
        (repo, o) => repo.save(o),
        { again: true, stale: true },
      );
      expect(stale.error).to.deep.include({ stale: true });
      expect(stale.row).to.include({ credits: 110, owner: 'someone else', version: 3 });
    });

    it('nothing changed: TypeORM’s way, as before (the re-read decides; a stale one is still a conflict)', async () => {
      const unchanged = await outcome(
        env,
        'fast',
        () => undefined,
        (repo, o) => repo.save(o),
      );
      expect(unchanged.runs).to.equal(0); // nothing to execute: TypeORM returns before its executor runs
      expect(unchanged.statements).to.deep.equal(['SELECT']);
      expect(unchanged.object.version).to.equal(1);
      const stale = await outcome(
        env,
        'fast',
        () => undefined,
        (repo, o) => repo.save(o),
        { stale: true },
      );
      expect(stale.runs).to.equal(1);
      expect(stale.error).to.deep.include({ stale: true });
    });

    it('an array of objects goes TypeORM’s way', async () => {
      const repo = env.ds.getRepository(FsAccount);
      const a = await repo.save(repo.create({ owner: 'a', credits: 1, touchedAt: null, label: null }));
      const loaded = await repo.findOneByOrFail({ id: a.id });
      loaded.credits = 2;
      expect(await executorRuns(() => repo.save([loaded]))).to.equal(1);
      expect(loaded.version).to.equal(2);
    });

    /** Loads a saved row of `cls`, changes it, saves it: TypeORM's executor runs; a stale copy's save is StaleEntityError. */
    async function fallsBack<T extends { id: number; version: number }>(cls: new () => T, seed: Partial<T>, change: (o: T) => void): Promise<void> {
      const repo = env.ds.getRepository(cls);
      const { id } = (await repo.save(repo.create(seed as never))) as unknown as T;
      const first = await repo.findOneByOrFail({ id } as never);
      const second = await repo.findOneByOrFail({ id } as never);
      change(first);
      expect(await executorRuns(() => repo.save(first as never)), `${cls.name} goes TypeORM's way`).to.equal(1);
      expect(first.version).to.equal(2);
      change(second);
      const error = await repo.save(second as never).then(
        () => null,
        (e) => e,
      );
      expect(error).to.be.instanceOf(StaleEntityError);
    }

    it('an entity with an update listener goes TypeORM’s way (the listener runs)', async () => {
      await fallsBack(FsListened, { credits: 1 }, (o) => (o.credits += 1));
      const row = await env.ds.getRepository(FsListened).find({ order: { id: 'DESC' }, take: 1 });
      expect(row[0].touched).to.equal(1);
    });

    it('an entity a subscriber listens to goes TypeORM’s way (the subscriber sees the update)', async () => {
      watched.length = 0;
      await fallsBack(FsWatched, { credits: 1 }, (o) => (o.credits += 1));
      expect(watched).to.deep.equal([['credits']]);
    });

    it('relations go TypeORM’s way', async () => {
      await fallsBack(FsRelated, { credits: 1, owner: null }, (o) => (o.credits += 1));
    });

    it('embedded columns: the fast path, with the row and the object of TypeORM’s path', async () => {
      const repo = env.ds.getRepository(FsEmbedded);
      const result: Record<Path, { runs: number; object: unknown; row: unknown }> = {} as never;
      for (const path of ['fast', 'typeorm'] as const) {
        const { id } = await repo.save(repo.create({ credits: 1, balance: { amount: 1, currency: 'EUR' } }));
        const obj = await repo.findOneByOrFail({ id });
        obj.balance.amount += 5;
        obj.balance.currency = 'USD';
        forceTypeormSave(path === 'typeorm');
        let runs: number;
        try {
          runs = await executorRuns(() => repo.save(obj));
        } finally {
          forceTypeormSave(false);
        }
        result[path] = { runs, object: plain(obj), row: plain(await repo.findOneByOrFail({ id })) };
      }
      expect(result.fast.runs).to.equal(0);
      expect(result.typeorm.runs).to.equal(1);
      expect(result.fast.object).to.deep.equal(result.typeorm.object);
      expect(result.fast.row).to.deep.equal(result.typeorm.row);
      expect(result.fast.row).to.deep.equal({ credits: 1, balance: { amount: 6, currency: 'USD' }, version: 2 });

      const { id } = await repo.save(repo.create({ credits: 1, balance: { amount: 1, currency: 'EUR' } }));
      const first = await repo.findOneByOrFail({ id });
      const second = await repo.findOneByOrFail({ id });
      first.balance.amount = 2;
      second.balance.amount = 3;
      expect(await executorRuns(() => repo.save(first))).to.equal(0);
      const error = await repo.save(second).then(
        () => null,
        (e) => e,
      );
      expect(error).to.be.instanceOf(StaleEntityError);
      expect((await repo.findOneByOrFail({ id })).balance).to.deep.include({ amount: 2 });
    });

    it('an entity whose only special column is a transformed one takes the fast path', async () => {
      const repo = env.ds.getRepository(FsTransformed);
      const { id } = await repo.save(repo.create({ credits: 1 }));
      const obj = await repo.findOneByOrFail({ id });
      obj.credits = 42;
      expect(await executorRuns(() => repo.save(obj))).to.equal(0);
      expect(obj.version).to.equal(2);
      expect(await repo.findOneByOrFail({ id })).to.include({ credits: 42, version: 2 });
    });
  },
  { subscribers: [FsWatcher] },
);

@Versioned()
@Entity('fs_global')
class FsGlobal {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) credits!: number;
  @VersionColumn() version!: number;
}

const everything: string[] = [];
@EventSubscriber()
class FsEverything implements EntitySubscriberInterface {
  beforeUpdate(event: UpdateEvent<unknown>) {
    everything.push(event.metadata.name);
  }
}

describeEachBackend(
  '@Versioned save() fast path with a subscriber of every entity',
  [FsGlobal],
  (env) => {
    it('a subscriber without listenTo() hears every update: TypeORM’s way', async () => {
      const repo = env.ds.getRepository(FsGlobal);
      const { id } = await repo.save(repo.create({ credits: 1 }));
      const obj = await repo.findOneByOrFail({ id });
      obj.credits = 2;
      everything.length = 0;
      expect(await executorRuns(() => repo.save(obj))).to.equal(1);
      expect(everything).to.deep.equal(['FsGlobal']);
      expect(obj.version).to.equal(2);
    });
  },
  { subscribers: [FsEverything] },
);
