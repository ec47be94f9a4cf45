import { expect } from 'chai';
import { DataSource as TypeOrmDataSource, type DataSource } from 'typeorm';
import {
  advisoryLockExists,
  advisoryLockId,
  currentManager,
  installLocking,
  LockConfigError,
  LockTimeoutError,
  StaleEntityError,
  transaction,
  withAdvisoryLock,
  withLock,
  type LockingHandle,
} from '../src';
import { installationOf, liveInstallations } from '../src/installations';
import { dataSourceOf } from '../src/orm/typeorm/compat';
import { patchedInternals } from '../src/orm/typeorm/internals';
import { race } from '../src/testing';
import { makeTwoBilling, onlyOneJob, openDataSource, Overlap, recorder, TWO_ENTITIES, TwoDoc, TwoNote, TwoUser } from './fixtures/two-sources';
import { BACKENDS, backendUrl, dataSourceOptions, type BackendName } from './support/backends';
import { reasons } from './support/rejection';

/**
 * Installations (docs/setup.md): two live DataSources with the
 * same entity classes, a DataSource destroyed without uninstall() and a new one, and decorated
 * entities written through a DataSource where ormlock is not installed.
 */

const N = 20;
/** The lock wait of the racing charges (the first installation's own limit, 1 s, is what a later test checks). */
const RACE_WAIT_MS = 15_000;
const ORDERS: Array<[BackendName, BackendName]> = [
  ['postgres', 'mariadb'],
  ['mariadb', 'postgres'],
];
const PAIRS: Array<[BackendName, BackendName]> = BACKENDS.flatMap((a) => BACKENDS.map((b) => [a, b] as [BackendName, BackendName]));

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<any> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, but the call succeeded');
}

/** True when the row `two_users.id = id` is row-locked by someone else (a NOWAIT attempt on a connection of its own fails). */
async function rowIsLocked(ds: DataSource, id: number): Promise<boolean> {
  const qr = ds.createQueryRunner();
  await qr.connect();
  try {
    await qr.startTransaction();
    const ph = ds.options.type === 'postgres' ? '$1' : '?';
    await qr.query(`SELECT id FROM two_users WHERE id = ${ph} FOR UPDATE NOWAIT`, [id]);
    return false;
  } catch {
    return true;
  } finally {
    if (qr.isTransactionActive) await qr.rollbackTransaction().catch(() => undefined);
    await qr.release();
  }
}

async function credits(ds: DataSource, id: number): Promise<number> {
  return (await ds.getRepository(TwoUser).findOneByOrFail({ id })).credits;
}

async function resetUser(ds: DataSource, id: number, name: string, amount: number): Promise<void> {
  await ds.getRepository(TwoUser).delete({ id });
  await ds.getRepository(TwoUser).insert({ id, name, credits: amount });
}

for (const [a, b] of ORDERS) {
  describe(`installations: two live DataSources, ${a} installed first, ${b} second (same entity classes)`, function () {
    let first: DataSource;
    let second: DataSource;
    let firstHandle: LockingHandle;
    let secondHandle: LockingHandle;
    const firstEvents = recorder();
    const secondEvents = recorder();
    let firstIdsBefore: string[];
    let firstSettingsBefore: object;

    before(async function () {
      const f = await openDataSource(a, `first-${a}`);
      const s = await openDataSource(b, `second-${b}`);
      if (!f || !s) {
        await f?.destroy();
        await s?.destroy();
        return this.skip();
      }
      first = f;
      second = s;
      firstHandle = await installLocking(first, { namespace: 'ns-first', lockTimeoutMs: 1000, onLockEvent: firstEvents.onLockEvent });
      firstIdsBefore = advisoryLockId('only-one-job', { dataSource: first });
      firstSettingsBefore = { ...firstHandle.installation.settings };
      secondHandle = await installLocking(second, { namespace: 'ns-second', lockTimeoutMs: 7000, onLockEvent: secondEvents.onLockEvent });
    });

    after(async () => {
      firstHandle?.uninstall();
      secondHandle?.uninstall();
      if (first?.isInitialized) await first.destroy();
      if (second?.isInitialized) await second.destroy();
    });

    beforeEach(async () => {
      await resetUser(first, 1, `user of ${a}`, 1000);
      await resetUser(second, 1, `user of ${b}`, 500);
      firstEvents.events.length = 0;
      secondEvents.events.length = 0;
    });

    it('withLock(user) of each, loaded through each, locks and writes its own row (same id in both)', async () => {
      const u1 = await first.getRepository(TwoUser).findOneByOrFail({ id: 1 });
      const u2 = await second.getRepository(TwoUser).findOneByOrFail({ id: 1 });
      const seen: Record<string, unknown> = {};
      await withLock(u1, async (locked) => {
        seen.first = { name: locked.name, lockedHere: await rowIsLocked(first, 1), lockedThere: await rowIsLocked(second, 1) };
        locked.credits -= 1;
        await currentManager().save(locked);
      });
      await withLock(u2, async (locked) => {
        seen.second = { name: locked.name, lockedHere: await rowIsLocked(second, 1), lockedThere: await rowIsLocked(first, 1) };
        locked.credits -= 2;
        await currentManager().save(locked);
      });
      expect(seen).to.deep.equal({
        first: { name: `user of ${a}`, lockedHere: true, lockedThere: false },
        second: { name: `user of ${b}`, lockedHere: true, lockedThere: false },
      });
      expect(await credits(first, 1)).to.equal(999);
      expect(await credits(second, 1)).to.equal(498);
      // each installation's observer sees its own lock only
      const acquired = (events: typeof firstEvents.events) => events.filter((e) => e.type === 'acquired').map((e) => `${e.kind}:${e.target}:${e.db}`);
      expect(acquired(firstEvents.events)).to.deep.equal([`row:TwoUser:${firstHandle.dialect.dbSystem}`]);
      expect(acquired(secondEvents.events)).to.deep.equal([`row:TwoUser:${secondHandle.dialect.dbSystem}`]);
    });

    it(`control: ${N}+${N} concurrent charges without a lock (one per database) lose updates`, async () => {
      const b1 = makeTwoBilling(first.getRepository(TwoUser), { dataSource: first });
      const b2 = makeTwoBilling(second.getRepository(TwoUser), { dataSource: second });
      const results = await race(2 * N, (i) => (i % 2 ? b2.chargeUnlocked(1, 10) : b1.chargeUnlocked(1, 10)));
      expect(reasons(results)).to.deep.equal([]);
      expect(await credits(first, 1), `lost updates expected on ${a}`).to.be.greaterThan(1000 - N * 10);
      expect(await credits(second, 1), `lost updates expected on ${b}`).to.be.greaterThan(500 - N * 10);
    });

    it(`withLock(user): ${N}+${N} concurrent charges, each on the user loaded through its own DataSource, are exact in both`, async () => {
      // the first installation's 1 s lock wait is for the timeout test below; 20 holders of 15 ms each may queue longer on a loaded machine
      const b1 = makeTwoBilling(first.getRepository(TwoUser), { timeoutMs: RACE_WAIT_MS });
      const b2 = makeTwoBilling(second.getRepository(TwoUser), { timeoutMs: RACE_WAIT_MS });
      const results = await race(2 * N, (i) => (i % 2 ? b2.chargeWithLock(1, 10) : b1.chargeWithLock(1, 10)));
      expect(reasons(results)).to.deep.equal([]);
      expect(await credits(first, 1)).to.equal(1000 - N * 10);
      expect(await credits(second, 1)).to.equal(500 - N * 10);
    });

    it(`@Pessimistic({ dataSource }): ${N}+${N} concurrent charges, one method per DataSource, are exact in both`, async () => {
      const b1 = makeTwoBilling(first.getRepository(TwoUser), { dataSource: first, timeoutMs: RACE_WAIT_MS });
      const b2 = makeTwoBilling(second.getRepository(TwoUser), { dataSource: second, timeoutMs: RACE_WAIT_MS });
      const results = await race(2 * N, (i) => (i % 2 ? b2.chargePessimistic(1, 10) : b1.chargePessimistic(1, 10)));
      expect(reasons(results)).to.deep.equal([]);
      expect(await credits(first, 1)).to.equal(1000 - N * 10);
      expect(await credits(second, 1)).to.equal(500 - N * 10);
    });

    it("a @Pessimistic({ dataSource: first }) method reading through the second's repository → LockConfigError (no unlocked read)", async () => {
      const billing = makeTwoBilling(second.getRepository(TwoUser), { dataSource: first });
      const err = await rejection(billing.chargePessimistic(1, 10));
      expect(err).to.be.instanceOf(LockConfigError);
      expect(err.entity).to.equal('TwoUser');
      expect(err.message).to.include('@Pessimistic').and.include(secondHandle.installation.label).and.include('no ormlock transaction is open');
      expect(await credits(second, 1)).to.equal(500);
    });

    function expectBothListed(err: unknown, caller: string) {
      expect(err, caller).to.be.instanceOf(LockConfigError);
      const message = (err as Error).message;
      expect(message, caller).to.include(caller);
      expect(message, caller).to.include(firstHandle.installation.label);
      expect(message, caller).to.include(secondHandle.installation.label);
      expect(message, caller).to.include('{ dataSource }');
      expect((err as LockConfigError).details.candidates, caller).to.have.members([firstHandle.installation.label, secondHandle.installation.label]);
    }

    it('an undecidable call throws LockConfigError listing both DataSources, and runs nothing', async () => {
      let ran = 0;
      expectBothListed(await rejection(transaction(async () => void ran++)), 'transaction()');
      const neverLoaded = first.getRepository(TwoUser).create({ id: 1 });
      expectBothListed(await rejection(withLock(neverLoaded, async () => void ran++)), 'withLock()');
      const billing = makeTwoBilling(first.getRepository(TwoUser)); // @Pessimistic() without { dataSource }
      expectBothListed(await rejection(billing.chargePessimistic(1, 10)), '@Pessimistic');
      expectBothListed(await rejection(withAdvisoryLock('k', async () => void ran++)), 'withAdvisoryLock');
      expectBothListed(await rejection(() => advisoryLockId('k')), 'advisoryLockId');
      expect(ran).to.equal(0);
      expect(await credits(first, 1)).to.equal(1000);
      expect(await credits(second, 1)).to.equal(500);
    });

    it('the ambient transaction decides when the call does not (a never-loaded object inside a transaction of one)', async () => {
      await transaction(
        async () => {
          expect(dataSourceOf(currentManager())).to.equal(second);
          await transaction(async () => expect(dataSourceOf(currentManager())).to.equal(second)); // joins
          const copy = second.getRepository(TwoUser).create({ id: 1 });
          await withLock(copy, async (locked) => {
            expect(locked.name).to.equal(`user of ${b}`);
            expect(await rowIsLocked(second, 1)).to.equal(true);
            expect(await rowIsLocked(first, 1)).to.equal(false);
          });
        },
        { dataSource: second },
      );
    });

    it('an object loaded through one is locked in its own database, even inside a transaction of the other', async () => {
      const u1 = await first.getRepository(TwoUser).findOneByOrFail({ id: 1 });
      await transaction(
        async () => {
          await withLock(u1, async (locked) => {
            expect(locked.name).to.equal(`user of ${a}`);
            expect(await rowIsLocked(first, 1)).to.equal(true);
            expect(await rowIsLocked(second, 1)).to.equal(false);
            locked.credits -= 3;
            await currentManager().save(locked); // the withLock transaction's manager: the first's
          });
        },
        { dataSource: second },
      );
      expect(await credits(first, 1)).to.equal(997);
      expect(await credits(second, 1)).to.equal(500);
    });

    it("the second installLocking left the first's namespace, advisory key ids, lock timeout and observer as they were", async () => {
      expect(firstHandle.installation.settings).to.deep.equal(firstSettingsBefore);
      expect(firstHandle.installation.settings.namespace).to.equal('ns-first');
      expect(firstHandle.installation.settings.lockTimeoutMs).to.equal(1000);
      expect(secondHandle.installation.settings.namespace).to.equal('ns-second');
      expect(advisoryLockId('only-one-job', { dataSource: first })).to.deep.equal(firstIdsBefore);
      expect(advisoryLockId('only-one-job', { dataSource: second })).to.not.deep.equal(firstIdsBefore);

      // the first's lockTimeoutMs still applies to its row locks: a held row times out after 1000 ms, not 7000
      const holder = first.createQueryRunner();
      await holder.connect();
      await holder.startTransaction();
      try {
        await holder.query(`SELECT id FROM two_users WHERE id = ${a === 'postgres' ? '$1' : '?'} FOR UPDATE`, [1]);
        const user = await first.getRepository(TwoUser).findOneByOrFail({ id: 1 });
        const err = await rejection(withLock(user, async () => 'locked'));
        expect(err).to.be.instanceOf(LockTimeoutError);
        expect(err.message).to.include('after 1000 ms');
      } finally {
        await holder.rollbackTransaction();
        await holder.release();
      }
      const timeouts = (events: typeof firstEvents.events) => events.filter((e) => e.type === 'timeout').map((e) => e.target);
      expect(timeouts(firstEvents.events)).to.deep.equal(['TwoUser']);
      expect(secondEvents.events).to.deep.equal([]);
    });

    /**
     * Another process of the same application installs `ns-first` on the same database (here a
     * second DataSource, `peer`): the "only one at a time" job of both never overlaps. The
     * control is what the bug did: the first DataSource's key taken with the second's namespace.
     */
    async function jobOverlap(peerNamespace: string): Promise<number> {
      const peer = await openDataSource(a, 'peer', { fresh: false, poolSize: 8 });
      const peerHandle = await installLocking(peer!, { namespace: peerNamespace });
      try {
        // advisoryLockId with { dataSource } is per namespace: the peer's ids equal the first's only with the first's namespace
        const peerIds = advisoryLockId('only-one-job', { dataSource: peer! });
        if (peerNamespace === 'ns-first') expect(peerIds).to.deep.equal(firstIdsBefore);
        else expect(peerIds).to.not.deep.equal(firstIdsBefore);
        const track = new Overlap();
        const results = await race(12, (i) => onlyOneJob(i % 2 ? peer! : first, track, 30));
        expect(reasons(results)).to.deep.equal([]);
        return track.max;
      } finally {
        peerHandle.uninstall();
        await peer!.destroy();
      }
    }

    it('two processes of one application (same namespace) run the "only one at a time" job one at a time', async () => {
      expect(await jobOverlap('ns-first')).to.equal(1);
    });

    it('control: with the namespace the second installLocking would have overwritten it with, the job overlaps', async () => {
      expect(await jobOverlap('ns-second')).to.be.greaterThan(1);
    });
  });
}

describe('installations: labels', () => {
  for (const name of BACKENDS) {
    it(`[${name}] two unnamed DataSources (TypeORM 1.x has no name option) on different databases are told apart in the undecidable error`, async function () {
      const base = await backendUrl(name);
      const options = await dataSourceOptions(name, TWO_ENTITIES);
      if (!base || !options) return this.skip();
      const own = await new TypeOrmDataSource(options).initialize(); // the per-process test database
      const shared = await new TypeOrmDataSource({ ...options, url: base, synchronize: false, dropSchema: false } as typeof options).initialize(); // database `test`
      const h1 = await installLocking(own);
      const h2 = await installLocking(shared);
      try {
        const err = await rejection(transaction(async () => 'ran'));
        expect(err).to.be.instanceOf(LockConfigError);
        const [l1, l2] = [h1.installation.label, h2.installation.label];
        expect(l1, 'the two labels must differ, or the message cannot say which is which').to.not.equal(l2);
        expect(err.message).to.include(l1).and.include(l2);
      } finally {
        h1.uninstall();
        h2.uninstall();
        await own.destroy();
        await shared.destroy();
      }
    });
  }
});

describe('installations: a DataSource destroyed without uninstall(), then a new one', function () {
  for (const [a, b] of PAIRS) {
    it(`${a} → ${b}: transaction, withLock, @Pessimistic, withAdvisoryLock and a @Versioned conflict work on the new one`, async function () {
      const old = await openDataSource(a, 'old');
      if (!old) return this.skip();
      await installLocking(old);
      await resetUser(old, 1, 'old', 100);
      const oldUser = await old.getRepository(TwoUser).findOneByOrFail({ id: 1 });
      await withLock(oldUser, async (locked) => {
        locked.credits -= 1;
        await currentManager().save(locked);
      });
      await old.destroy(); // no uninstall()
      expect(installationOf(old)).to.equal(undefined);
      expect(liveInstallations()).to.deep.equal([]);
      expect(patchedInternals(), 'the last (implicit) uninstall restored the internals').to.deep.equal([]);

      const fresh = await openDataSource(b, 'new');
      if (!fresh) return this.skip();
      const ev = recorder();
      await installLocking(fresh, { onLockEvent: ev.onLockEvent });
      try {
        await resetUser(fresh, 1, 'new', 100);
        // transaction(): no option, on the new DataSource
        await transaction(async () => {
          expect(dataSourceOf(currentManager())).to.equal(fresh);
          await currentManager().update(TwoUser, { id: 1 }, { name: 'renamed' });
        });
        const acquiredSince = (mark: number) =>
          ev.events
            .slice(mark)
            .filter((e) => e.type === 'acquired')
            .map((e) => `${e.kind}:${e.target}`);
        expect(acquiredSince(0)).to.deep.equal([]);
        // withLock on a user loaded through the new one
        let mark = ev.events.length;
        const user = await fresh.getRepository(TwoUser).findOneByOrFail({ id: 1 });
        await withLock(user, async (locked) => {
          expect(await rowIsLocked(fresh, 1)).to.equal(true);
          locked.credits -= 10;
          await currentManager().save(locked);
        });
        expect(acquiredSince(mark)).to.deep.equal(['row:TwoUser']);
        // @Pessimistic() without options: the only live installation (save()'s own re-read is locked too)
        mark = ev.events.length;
        await makeTwoBilling(fresh.getRepository(TwoUser)).chargePessimistic(1, 5);
        expect(acquiredSince(mark)).to.include('row:TwoUser');
        expect(await credits(fresh, 1)).to.equal(85);
        expect((await fresh.getRepository(TwoUser).findOneByOrFail({ id: 1 })).name).to.equal('renamed');
        // withAdvisoryLock
        mark = ev.events.length;
        const held = await withAdvisoryLock('reborn', () => advisoryLockExists('reborn'));
        expect(held).to.equal(true);
        expect(acquiredSince(mark)).to.deep.equal(['advisory:reborn']);
        expect(await advisoryLockExists('reborn')).to.equal(false);
        // @Versioned: a stale save is refused
        const docs = fresh.getRepository(TwoDoc);
        const doc = await docs.save(docs.create({ title: 'v1' }));
        const d1 = await docs.findOneByOrFail({ id: doc.id });
        const d2 = await docs.findOneByOrFail({ id: doc.id });
        d1.title = 'first';
        await docs.save(d1);
        d2.title = 'stale';
        expect(await rejection(docs.save(d2))).to.be.instanceOf(StaleEntityError);
        expect((await docs.findOneByOrFail({ id: doc.id })).title).to.equal('first');
      } finally {
        await fresh.destroy(); // no uninstall() either
      }
      expect(liveInstallations()).to.deep.equal([]);
      expect(patchedInternals()).to.deep.equal([]);
    });
  }
});

for (const [a, b] of PAIRS) {
  describe(`installations: ${a} installed, ${b} 'analytics' not installed`, function () {
    let main: DataSource;
    let other: DataSource;
    let handle: LockingHandle;
    const ph = (backend: BackendName, n: number) => (backend === 'postgres' ? `$${n}` : '?');

    before(async function () {
      const m = await openDataSource(a, 'main');
      // on the same backend, 'analytics' is a second DataSource on the tables 'main' made
      const o = await openDataSource(b, 'analytics', a === b ? { fresh: false } : {});
      if (!m || !o) {
        await m?.destroy();
        await o?.destroy();
        return this.skip();
      }
      main = m;
      other = o;
      handle = await installLocking(main);
    });

    after(async () => {
      handle?.uninstall();
      if (main?.isInitialized) await main.destroy();
      if (other?.isInitialized) await other.destroy();
    });

    function expectRefused(err: unknown, entity: string) {
      expect(err).to.be.instanceOf(LockConfigError);
      expect((err as LockConfigError).entity).to.equal(entity);
      expect((err as LockConfigError).details.dataSource).to.equal('analytics');
      expect((err as Error).message)
        .to.include(entity)
        .and.include("'analytics'")
        .and.include('installLocking');
    }

    async function docCount(title: string): Promise<number> {
      const rows = await other.query(`SELECT COUNT(*) AS n FROM two_docs WHERE title = ${ph(b, 1)}`, [title]);
      return Number(rows[0].n);
    }

    it('control: the same writes through the installed DataSource, and undecorated entities through either, succeed', async () => {
      await main.getRepository(TwoDoc).save({ title: 'main-doc' });
      await other.getRepository(TwoUser).save({ id: 11, name: 'analytics user', credits: 1 });
      expect(await main.getRepository(TwoDoc).countBy({ title: 'main-doc' })).to.equal(1);
      expect(await other.getRepository(TwoUser).countBy({ id: 11 })).to.equal(1);
    });

    it('@Versioned TwoDoc saved (inserted, updated, removed) through it → LockConfigError naming TwoDoc and the DataSource; nothing written', async () => {
      const docs = other.getRepository(TwoDoc);
      expectRefused(await rejection(docs.save(docs.create({ title: `new-${a}-${b}` }))), 'TwoDoc');
      expectRefused(await rejection(other.manager.save(TwoDoc, { title: `new-${a}-${b}` })), 'TwoDoc');
      expectRefused(await rejection(docs.insert({ title: `new-${a}-${b}` })), 'TwoDoc');
      expect(await docCount(`new-${a}-${b}`)).to.equal(0);

      await other.query(`INSERT INTO two_docs (title, version) VALUES (${ph(b, 1)}, 1)`, [`old-${a}-${b}`]);
      const loaded = await docs.findOneByOrFail({ title: `old-${a}-${b}` });
      loaded.title = `changed-${a}-${b}`;
      expectRefused(await rejection(docs.save(loaded)), 'TwoDoc');
      expectRefused(await rejection(docs.remove(loaded)), 'TwoDoc');
      expect(await docCount(`old-${a}-${b}`)).to.equal(1);
      expect(await docCount(`changed-${a}-${b}`)).to.equal(0);
    });

    it('@AroundCreate(lockParent) TwoNote inserted through it → LockConfigError naming TwoNote and the DataSource; nothing written', async () => {
      const owner = await other.getRepository(TwoUser).save({ id: 12, name: 'owner', credits: 1 });
      const notes = other.getRepository(TwoNote);
      expectRefused(await rejection(notes.save(notes.create({ text: `note-${a}-${b}`, owner }))), 'TwoNote');
      expectRefused(await rejection(notes.insert({ text: `note-${a}-${b}`, owner: { id: 12 } })), 'TwoNote');
      const rows = await other.query(`SELECT COUNT(*) AS n FROM two_notes WHERE text = ${ph(b, 1)}`, [`note-${a}-${b}`]);
      expect(Number(rows[0].n)).to.equal(0);
    });

    // (on one backend both share the tables: there is only one row with that id)
    if (a !== b)
      it('withLock(user) of a user loaded through it neither locks nor writes the row with that id in the installed one', async () => {
        await resetUser(main, 14, 'main row', 100);
        await resetUser(other, 14, 'analytics row', 50);
        const user = await other.getRepository(TwoUser).findOneByOrFail({ id: 14 });
        const outcome = await withLock(user, async (locked) => {
          const seen = locked.name;
          locked.credits -= 1;
          await currentManager().save(locked);
          return seen;
        }).then(
          (seen) => `ran on the row named '${seen}'`,
          (error) => error,
        );
        expect((await main.getRepository(TwoUser).findOneByOrFail({ id: 14 })).credits, "the installed DataSource's row is untouched").to.equal(100);
        expect(user.name, 'the object still holds its own row').to.equal('analytics row');
        expect(outcome).to.be.instanceOf(LockConfigError);
        expect(outcome.message).to.include("'analytics'");
      });

    it('a @Pessimistic method reading through it → LockConfigError naming the entity and the DataSource; nothing written', async () => {
      await other.getRepository(TwoUser).save({ id: 13, name: 'reader', credits: 50 });
      for (const options of [{ dataSource: main }, {}]) {
        const billing = makeTwoBilling(other.getRepository(TwoUser), options);
        const err = await rejection(billing.chargePessimistic(13, 10));
        expect(err).to.be.instanceOf(LockConfigError);
        expect(err.entity).to.equal('TwoUser');
        expect(err.message).to.include('@Pessimistic').and.include("'analytics'");
      }
      expect((await other.getRepository(TwoUser).findOneByOrFail({ id: 13 })).credits).to.equal(50);
    });
  });
}
