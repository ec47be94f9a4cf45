import { expect } from 'chai';
import {
  AfterLoad,
  Column,
  Entity,
  EventSubscriber,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
  VersionColumn,
  type EntitySubscriberInterface,
  type UpdateEvent,
} from 'typeorm';
import { StaleEntityError, transaction, Versioned } from '../src';
import { describeEachBackend } from './support/suite';

/**
 * save() of a loaded @Versioned object without TypeORM's re-read: the diff is made against the
 * values it was loaded with, and the UPDATE's version check proves they are still the row's.
 * Each case against the same work on TypeORM's own path (the object's re-read forced).
 */

@Versioned()
@Entity('nr_accounts')
class NrAccount {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 50 }) owner!: string;
  @Column({ type: 'int' }) credits!: number;
  @Column({ type: 'timestamp', nullable: true }) touchedAt!: Date | null;
  @Column({ type: 'varchar', length: 50, select: false, nullable: true }) note?: string | null;
  @UpdateDateColumn() updatedAt!: Date;
  @VersionColumn() version!: number;
  loads = 0;
  @AfterLoad() counted() {
    this.loads++;
  }
}

const updates: Array<{ changed: string[]; databaseCredits: unknown }> = [];
@EventSubscriber()
class NrUpdates implements EntitySubscriberInterface<NrAccount> {
  listenTo() {
    return NrAccount;
  }
  beforeUpdate(event: UpdateEvent<NrAccount>) {
    updates.push({ changed: event.updatedColumns.map((c) => c.propertyName).sort(), databaseCredits: event.databaseEntity?.credits });
  }
}

describeEachBackend(
  '@Versioned save() without the re-read',
  [NrAccount],
  (env) => {
    const repo = () => env.ds.getRepository(NrAccount);
    const seed = () => repo().save(repo().create({ owner: `o${process.pid}`, credits: 10, touchedAt: new Date('2024-01-02T03:04:05Z'), note: 'n' }));

    /** TypeORM's re-read of the row before an update (not ormlock's read-back of generated columns after it). */
    const isReRead = (q: string) => /^SELECT/i.test(q) && !/ormlock_reload/.test(q);

    /** Statements of `fn`. */
    async function logged(fn: () => Promise<unknown>): Promise<string[]> {
      env.log.start();
      try {
        await fn();
      } finally {
        // eslint-disable-next-line no-unsafe-finally
        return env.log.stop();
      }
    }

    it("a loaded object changed and saved: one UPDATE … WHERE version, no SELECT; the same row, columns and events as TypeORM's own path", async () => {
      const { id } = await seed();
      const fast = await repo().findOneByOrFail({ id });
      fast.credits -= 3;
      fast.touchedAt!.setUTCFullYear(2025); // changed in place: the snapshot holds a copy
      updates.length = 0;
      const sql = await logged(() => transaction(() => repo().save(fast)));
      // no re-read (MariaDB has no UPDATE … RETURNING: the update date is read back after the UPDATE, as before)
      expect(sql.filter(isReRead), sql.join('\n')).to.deep.equal([]);
      expect(sql.filter((q) => /^UPDATE/i.test(q))).to.have.length(1);
      expect(fast.version).to.equal(2);
      const fastEvents = updates.splice(0);

      // TypeORM's own path on a second row: an object with the loaded values that was not loaded itself (re-read)
      const other = await seed();
      const slow = Object.assign(repo().create(), await repo().findOneByOrFail({ id: other.id }));
      slow.credits -= 3;
      slow.touchedAt!.setUTCFullYear(2025);
      const slowSql = await logged(() => transaction(() => repo().save(slow)));
      expect(slowSql.filter(isReRead), 'TypeORM re-reads').to.have.length.greaterThan(0);
      const slowEvents = updates.splice(0);
      expect(fastEvents).to.deep.equal(slowEvents);
      expect(fastEvents[0]).to.deep.equal({ changed: ['credits', 'touchedAt'], databaseCredits: 10 });

      const a = await repo().findOneByOrFail({ id });
      const b = await repo().findOneByOrFail({ id: other.id });
      expect({ credits: a.credits, touchedAt: a.touchedAt, version: a.version }).to.deep.equal({
        credits: b.credits,
        touchedAt: b.touchedAt,
        version: b.version,
      });
      expect(a.touchedAt!.getUTCFullYear()).to.equal(2025);
    });

    it('a stale object: the same StaleEntityError, nothing written; a stale object saved unchanged: still a conflict (the re-read decides)', async () => {
      const { id } = await seed();
      const first = await repo().findOneByOrFail({ id });
      const second = await repo().findOneByOrFail({ id });
      first.credits = 1;
      await repo().save(first);
      second.credits = 2;
      const err = await repo()
        .save(second)
        .then(
          () => null,
          (e) => e,
        );
      expect(err).to.be.instanceOf(StaleEntityError);
      expect(err.expectedVersion).to.equal(1);
      expect(err.actualVersion).to.equal(2);
      expect(err.message).to.match(/is stale: it was loaded at version 1 but the row is now at version 2/);
      expect((await repo().findOneByOrFail({ id })).credits).to.equal(1);

      const unchanged = await repo().findOneByOrFail({ id });
      await repo().save(Object.assign(await repo().findOneByOrFail({ id }), { credits: 3 })); // a concurrent change
      const sql = await logged(() =>
        repo()
          .save(unchanged)
          .then(
            () => null,
            (e) => e,
          ),
      );
      expect(sql.some(isReRead), 'unchanged: TypeORM re-reads').to.equal(true);
      expect(
        await repo()
          .save(unchanged)
          .then(
            () => null,
            (e) => e,
          ),
      ).to.be.instanceOf(StaleEntityError);
    });

    it("after a save, the next save of the same object goes TypeORM's way (re-read) and still checks the version", async () => {
      const { id } = await seed();
      const obj = await repo().findOneByOrFail({ id });
      obj.credits = 5;
      await repo().save(obj);
      obj.credits = 6;
      const sql = await logged(() => repo().save(obj));
      expect(sql.some(isReRead)).to.equal(true);
      expect((await repo().findOneByOrFail({ id })).credits).to.equal(6);
    });

    it('a column the object did not load (select: false) but holds now: the re-read decides', async () => {
      const { id } = await seed();
      const obj = await repo().findOneByOrFail({ id });
      obj.note = 'changed';
      const sql = await logged(() => repo().save(obj));
      expect(sql.some(isReRead)).to.equal(true);
      const row = await repo().findOneOrFail({ where: { id }, select: { id: true, note: true } });
      expect(row.note).to.equal('changed');
    });

    it('a version set by hand is not trusted: the re-read decides', async () => {
      const { id } = await seed();
      const obj = await repo().findOneByOrFail({ id });
      await repo().save(Object.assign(await repo().findOneByOrFail({ id }), { credits: 99 })); // a concurrent change: the row moves to version 2
      obj.version = 2;
      obj.owner = 'x';
      const sql = await logged(() => repo().save(obj));
      expect(sql.some(isReRead)).to.equal(true);
      const row = await repo().findOneByOrFail({ id });
      expect(row).to.include({ owner: 'x', version: 3 });
    });
  },
  { subscribers: [NrUpdates] },
);
