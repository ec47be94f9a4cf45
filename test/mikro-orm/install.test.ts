import { MikroORM } from '@mikro-orm/core';
import { expect } from 'chai';
import { LockConfigError } from '../../src';
import { liveInstallations } from '../../src/installations';
import { installLocking, patchedMikroOrmInternals } from '../../src/orm/mikro-orm';
import { MkBadAdvisory, MkBadChild, MkBadMode, MkBadParent, MkBadUnversioned, MkPlainRow } from '../fixtures/mikro-bad-entities';
import { BACKENDS } from '../support/backends';
import { createMikroOrm } from '../support/mikro-suite';

for (const backend of BACKENDS) {
  describe(`installLocking(orm) from ormlock/mikro-orm: bad input and lifecycle [mikro-orm, ${backend}]`, function () {
    const opened: MikroORM[] = [];
    const suite = this;
    async function orm(entities: Function[]): Promise<MikroORM> {
      const o = await createMikroOrm(backend, entities);
      if (!o) suite.ctx.skip();
      opened.push(o!);
      return o!;
    }
    afterEach(async () => {
      for (const o of opened.splice(0)) await o.close(true).catch(() => undefined);
    });

    const refused = async (p: Promise<unknown>) => {
      const err = await p.then(
        () => null,
        (e) => e,
      );
      expect(err).to.be.instanceOf(LockConfigError);
      return err as LockConfigError;
    };

    it('something that is not a MikroORM instance', async () => {
      const err = await refused(installLocking({} as never));
      expect(err.message).to.contain('expected a MikroORM instance');
    });

    it('a MikroORM that is closed (or never connected)', async () => {
      const o = await orm([MkPlainRow]);
      await o.close(true);
      const err = await refused(installLocking(o));
      expect(err.message).to.match(/not connected/);
    });

    it('@Versioned without a version property names the entity and the fix', async () => {
      const err = await refused(installLocking(await orm([MkBadUnversioned])));
      expect(err.message).to.contain('@Versioned on MkBadUnversioned');
      expect(err.message).to.contain('version: true');
      expect(err.details.entity).to.equal('MkBadUnversioned');
    });

    it('lockParent naming no relation names the entity, the property and the relations it has', async () => {
      const err = await refused(installLocking(await orm([MkBadChild, MkBadParent])));
      expect(err.message).to.contain("lockParent('title') on MkBadChild");
      expect(err.message).to.contain("'parent'");
      expect(err.details.relation).to.equal('title');
    });

    it('options the database cannot honour', async () => {
      const err = await refused(installLocking(await orm([MkBadAdvisory])));
      expect(err.message).to.contain('@AdvisoryLock on MkBadAdvisory');
      if (backend === 'mariadb') {
        const mode = await refused(installLocking(await orm([MkBadMode])));
        expect(mode.message).to.contain('MkBadMode');
      } else {
        await installLocking(await orm([MkBadMode])); // FOR KEY SHARE is fine on PostgreSQL
      }
    });

    it('a MikroORM whose internals differ: LockConfigError naming the internal and the version; nothing patched', async () => {
      const o = await orm([MkPlainRow]);
      const proto = Object.getPrototypeOf(Object.getPrototypeOf(o.em.getDriver()));
      const owner = Object.prototype.hasOwnProperty.call(proto, 'find') ? proto : Object.getPrototypeOf(proto);
      const original = owner.find;
      owner.find = async function find() {
        return [];
      };
      try {
        const err = await refused(installLocking(o));
        expect(err.message).to.contain('AbstractSqlDriver.prototype.find');
        expect(err.message).to.contain('MikroORM 6.6.16');
        expect(patchedMikroOrmInternals()).to.deep.equal([]);
      } finally {
        owner.find = original;
      }
    });

    it("two instances share the patched prototypes: the first's uninstall() keeps them, the last close() restores every own descriptor", async () => {
      const a = await orm([MkPlainRow]);
      const b = await orm([MkPlainRow]);
      const prototypes = prototypesOf(a);
      const before = descriptors(prototypes);
      const first = await installLocking(a);
      const second = await installLocking(b);
      const patched = patchedMikroOrmInternals();
      expect(patched.length).to.be.greaterThan(0);
      expect(changed(prototypes, before), 'patched while installed').to.not.deep.equal([]);
      first.uninstall();
      expect(patchedMikroOrmInternals(), 'the other installation still uses them').to.deep.equal(patched);
      expect(changed(prototypes, before)).to.not.deep.equal([]);
      await b.close(true); // the last one, uninstalled by close()
      expect(second.installation.port.isLive).to.equal(false);
      expect(patchedMikroOrmInternals()).to.deep.equal([]);
      expect(changed(prototypes, before)).to.deep.equal([]);
    });

    it('installs once per instance; orm.close() uninstalls by itself and the last one restores the internals', async () => {
      const o = await orm([MkPlainRow]);
      const handle = await installLocking(o);
      expect(patchedMikroOrmInternals().length).to.be.greaterThan(0);
      await refused(installLocking(o));
      expect(liveInstallations()).to.include(handle.installation);
      await o.close(true);
      expect(liveInstallations()).to.not.include(handle.installation);
      expect(patchedMikroOrmInternals()).to.deep.equal([]);
    });
  });
}

/** Every prototype (up to Object.prototype) of the objects a MikroORM instance's patches live on. */
function prototypesOf(o: MikroORM): object[] {
  const em = o.em.fork() as any;
  const driver = em.getDriver();
  const uow = em.getUnitOfWork(false);
  const roots = [em, driver, driver.getConnection('write'), uow, uow.changeSetPersister, em.createQueryBuilder(MkPlainRow)];
  const out = new Set<object>();
  for (const root of roots) {
    for (let p = Object.getPrototypeOf(root); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) out.add(p);
  }
  return [...out];
}

function descriptors(prototypes: object[]): Array<Map<PropertyKey, PropertyDescriptor>> {
  return prototypes.map((p) => new Map(Reflect.ownKeys(p).map((k) => [k, Object.getOwnPropertyDescriptor(p, k)!])));
}

/** The keys whose own descriptor differs from `before` (added, removed or replaced). */
function changed(prototypes: object[], before: Array<Map<PropertyKey, PropertyDescriptor>>): string[] {
  const now = descriptors(prototypes);
  return prototypes.flatMap((p, i) => {
    const keys = new Set([...before[i].keys(), ...now[i].keys()]);
    return [...keys]
      .filter((k) => {
        const [x, y] = [before[i].get(k), now[i].get(k)];
        return !x || !y || x.value !== y.value || x.get !== y.get || x.set !== y.set || x.writable !== y.writable || x.enumerable !== y.enumerable;
      })
      .map((k) => `${(p as { constructor?: { name?: string } }).constructor?.name}.${String(k)}`);
  });
}
