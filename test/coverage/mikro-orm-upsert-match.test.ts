/**
 * MikroORM upserts of an entity with `@AdvisoryLock(entity => key)` that match the existing row on
 * a unique property instead of the primary key, and leave the key column out of their values: the
 * key is the updated row's (read by the same rule MikroORM's upsert matches with), so the write
 * waits for the holder of that row's key. The control without the declaration does not wait; a
 * match ormlock cannot read back is refused by name.
 */
import { Entity, ManyToOne, PrimaryKey, Property } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/knex';
import { expect } from 'chai';
import { AdvisoryLock, LockConfigError, transaction, withAdvisoryLock } from '../../src';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { orderAgainstHolder, rejection } from './support';

const keyOf = (section: number) => `mkup:${process.pid}:section:${section}`;

@Entity({ tableName: 'cov_mk_up_groups' })
class MkUpGroup {
  @PrimaryKey({ type: 'integer' }) id!: number;
}

@AdvisoryLock((d: MkUpDoc) => keyOf(d.section))
@Entity({ tableName: 'cov_mk_up_docs' })
class MkUpDoc {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 40, unique: true }) slug!: string;
  @Property({ type: 'integer', default: 0 }) section!: number;
  @Property({ type: 'string', length: 40 }) title: string = '';
}

/** The control: the same table without the declaration. */
@Entity({ tableName: 'cov_mk_up_plain_docs' })
class MkUpPlainDoc {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 40, unique: true }) slug!: string;
  @Property({ type: 'integer', default: 0 }) section!: number;
  @Property({ type: 'string', length: 40 }) title: string = '';
}

/** A document whose unique key is a group reference: a match ormlock cannot read back by plain values. */
@AdvisoryLock((d: MkUpByGroup) => keyOf(d.section))
@Entity({ tableName: 'cov_mk_up_by_group' })
class MkUpByGroup {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @ManyToOne(() => MkUpGroup, { unique: true }) group!: MkUpGroup;
  @Property({ type: 'integer', default: 0 }) section!: number;
  @Property({ type: 'string', length: 40 }) title: string = '';
}

type Doc = typeof MkUpDoc | typeof MkUpPlainDoc;
type Write = (em: EntityManager, E: Doc, slug: string) => Promise<unknown>;

const WRITES: Array<{ tag: string; write: Write }> = [
  {
    tag: '[coverage mikro-orm @AdvisoryLock em.upsert(unique-property) locked]',
    write: (em, E, slug) => em.upsert(E as typeof MkUpDoc, { slug, title: 'up' } as MkUpDoc),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock em.upsert(onConflictFields) locked]',
    write: (em, E, slug) => em.upsert(E as typeof MkUpDoc, { slug, title: 'up' } as MkUpDoc, { onConflictFields: ['slug'] }),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock em.upsertMany(unique-property) locked]',
    write: (em, E, slug) => em.upsertMany(E as typeof MkUpDoc, [{ slug, title: 'up' } as MkUpDoc]),
  },
  {
    tag: '[coverage mikro-orm @AdvisoryLock qb.insert().onConflict(unique-property) locked]',
    write: (em, E, slug) =>
      em
        .createQueryBuilder(E as typeof MkUpDoc)
        .insert({ slug, title: 'up' } as MkUpDoc)
        .onConflict('slug')
        .merge(['title'])
        .execute(),
  },
];

describeEachMikroBackend('coverage: entity @AdvisoryLock upserts matched on a unique property', [MkUpGroup, MkUpDoc, MkUpPlainDoc, MkUpByGroup], (env) => {
  let n = 0;
  const em = () => env.orm.em as unknown as EntityManager;

  /** A row with a unique slug in its own section; the order of "holder released" / "write done" while its key is held. */
  async function orderAgainstKey(E: Doc, write: Write, holdMs: number): Promise<string[]> {
    const seed = env.orm.em.fork();
    const section = 5000 + ++n;
    const slug = `s${process.pid}-${n}`;
    seed.create(E, { slug, section, title: 'seed' });
    await seed.flush();
    return orderAgainstHolder(
      (body) => withAdvisoryLock(keyOf(section), body, { dataSource: env.orm }),
      () => transaction(() => write(em(), E, slug), { dataSource: env.orm }),
      holdMs,
    );
  }

  for (const row of WRITES) {
    it(`${row.tag} waits for the holder of the matched row's key; the control without the declaration does not`, async () => {
      expect(await orderAgainstKey(MkUpPlainDoc, row.write, 5000), 'control').to.deep.equal(['write done', 'holder released']);
      expect(await orderAgainstKey(MkUpDoc, row.write, 400)).to.deep.equal(['holder released', 'write done']);
    });
  }

  it('[coverage mikro-orm @AdvisoryLock em.upsert(unique-reference) refused] an upsert matched on a reference is refused by name (nothing written)', async () => {
    const seed = env.orm.em.fork();
    const group = seed.create(MkUpGroup, {});
    seed.create(MkUpByGroup, { group, section: 1, title: 'seed' });
    await seed.flush();
    const error = await rejection(
      transaction(() => em().upsert(MkUpByGroup, { group: em().getReference(MkUpGroup, group.id), title: 'up' } as MkUpByGroup), { dataSource: env.orm }),
    );
    expect(error).to.be.instanceOf(LockConfigError);
    expect(error.message).to.contain('@AdvisoryLock on MkUpByGroup: this em.upsert()').and.to.contain('not a plain column value');
    expect((await env.orm.em.fork().findOneOrFail(MkUpByGroup, { group: group.id })).title).to.equal('seed');
  });
});
