/**
 * The examples' schema as MikroORM entities (the demo's `--orm mikro-orm` run): the seeds' users
 * and orders, sites and nested-set pages, and counters. Tables are created by MikroORM's
 * SchemaGenerator in the demo's own database.
 */
import { Entity, OptionalProps, ManyToOne, PrimaryKey, Property, type EventArgs, type EventSubscriber } from '@mikro-orm/core';
import { AroundCreate, lockParent, Versioned } from '../../src';

@Entity({ tableName: 'users' })
export class MUser {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 100 }) name!: string;
  @Property({ type: 'integer' }) credits!: number;
}

@Entity({ tableName: 'orders' })
export class MOrder {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @ManyToOne(() => MUser) user!: MUser;
  @Property({ type: 'integer' }) price!: number;
  @Property({ type: 'boolean' }) paid: boolean = false;
  [OptionalProps]?: 'paid';
}

@Entity({ tableName: 'sites' })
export class MSite {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 100 }) name!: string;
}

/** `acts_as_nested_set scope: :site` with the seed's `around_create :save_with_lock`. */
@AroundCreate(lockParent('site'))
@Entity({ tableName: 'pages' })
export class MPage {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 100 }) title!: string;
  @ManyToOne(() => MSite) site!: MSite;
  @Property({ type: 'integer' }) lft: number = 0;
  @Property({ type: 'integer' }) rgt: number = 0;
  [OptionalProps]?: 'lft' | 'rgt';
}

/** The same pages without the parent lock (the control run). */
@Entity({ tableName: 'pages_plain' })
export class MPagePlain {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 100 }) title!: string;
  @ManyToOne(() => MSite) site!: MSite;
  @Property({ type: 'integer' }) lft: number = 0;
  @Property({ type: 'integer' }) rgt: number = 0;
  [OptionalProps]?: 'lft' | 'rgt';
}

@Versioned()
@Entity({ tableName: 'counters' })
export class MCounter {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 40 }) name!: string;
  @Property({ type: 'integer' }) value: number = 0;
  @Property({ type: 'integer', version: true }) version!: number;
  [OptionalProps]?: 'value' | 'version';
}

/** MikroORM's own version check only (the control run). */
@Entity({ tableName: 'plain_counters' })
export class MPlainCounter {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'string', length: 40 }) name!: string;
  @Property({ type: 'integer' }) value: number = 0;
  @Property({ type: 'integer', version: true }) version!: number;
  [OptionalProps]?: 'value' | 'version';
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The nested-set library: a beforeCreate subscriber that appends the page to its site's tree. */
export class NestedSetSubscriber implements EventSubscriber<MPage | MPagePlain> {
  getSubscribedEntities() {
    return [MPage, MPagePlain];
  }
  async beforeCreate(args: EventArgs<MPage | MPagePlain>): Promise<void> {
    const page = args.entity;
    const table = page instanceof MPage ? 'pages' : 'pages_plain';
    const [row] = await args.em
      .getConnection()
      .execute(`select coalesce(max(rgt), 0) as m from ${table} where site_id = ?`, [page.site.id], 'all', args.em.getTransactionContext());
    await sleep(3);
    page.lft = Number(row.m) + 1;
    page.rgt = Number(row.m) + 2;
  }
}

export const entities = [MUser, MOrder, MSite, MPage, MPagePlain, MCounter, MPlainCounter];
