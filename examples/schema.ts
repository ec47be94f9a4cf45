/**
 * The examples' one shared schema (created by the migrations in ../migrations):
 *
 * - `sites` / `pages`: the seed's nested-set page tree (`Page acts_as_nested_set scope: :site`),
 *   with `around_create :save_with_lock` written as `@AroundCreate(lockParent('site'))`;
 *   `pages_unlocked` is its control twin, the same page without the lock.
 * - `users` / `orders`: the seed's `charge_user_for_order`.
 * - `counters` / `counters_plain`: the seed's optimistic locking (`lock_version`): a counter
 *   that is `@Versioned`, and its control that has only TypeORM's own `@VersionColumn`.
 * - `categories` / `categories_unlocked`: TypeORM's own nested set (`@Tree('nested-set')`),
 *   with `@LockedTree()` and without it.
 *
 * A scenario that needs more tables adds one migration next to the others.
 */
import {
  type ColumnOptions,
  Column,
  Entity,
  EventSubscriber,
  Index,
  JoinColumn,
  ManyToOne,
  PrimaryGeneratedColumn,
  Tree,
  TreeChildren,
  TreeParent,
  VersionColumn,
  type EntitySubscriberInterface,
  type InsertEvent,
} from 'typeorm';
import { AroundCreate, LockedTree, lockParent, Pessimistic, Versioned } from '../src';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Nested set

@Pessimistic({ timeoutMs: 10_000 })
@Entity('sites')
export class Site {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 100 }) name!: string;
}

/** The columns of a page of a site's nested set. */
export abstract class PageColumns {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 200 }) title!: string;
  @Column({ name: 'site_id', type: 'int' }) siteId!: number;
  /** The `site` relation, declared by each concrete class (foreign-key names are per table). */
  site?: Site;
  @Column({ type: 'int', default: 0 }) lft!: number;
  @Column({ type: 'int', default: 0 }) rgt!: number;
}

/** A page: its creation locks the site row first, so sibling creations serialize. */
@AroundCreate(lockParent('site'))
@Index('IDX_pages_site_lft', ['siteId', 'lft'])
@Entity('pages')
export class Page extends PageColumns {
  @ManyToOne(() => Site, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'site_id', foreignKeyConstraintName: 'FK_pages_site' })
  override site?: Site;
}

/** The control: the same page without the lock. */
@Index('IDX_pages_unlocked_site_lft', ['siteId', 'lft'])
@Entity('pages_unlocked')
export class UnlockedPage extends PageColumns {
  @ManyToOne(() => Site, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'site_id', foreignKeyConstraintName: 'FK_pages_unlocked_site' })
  override site?: Site;
}

/** How long the tree library pauses between reading max(rgt) and returning (widens the race). */
export const treeTiming = { gapMs: 5 };

/**
 * The tree library (awesome_nested_set's `before_create :set_default_left_and_right`): puts
 * a new page at the end of its site's tree, from the current max(rgt).
 */
@EventSubscriber()
export class NestedSetSubscriber implements EntitySubscriberInterface<PageColumns> {
  listenTo() {
    return PageColumns;
  }
  async beforeInsert(event: InsertEvent<PageColumns>): Promise<void> {
    const page = event.entity;
    const row = await event.manager
      .createQueryBuilder(event.metadata.target, 'p')
      .select('COALESCE(MAX(p.rgt), 0)', 'max')
      .where('p.siteId = :siteId', { siteId: page.siteId ?? page.site?.id })
      .getRawOne<{ max: number | string }>();
    const max = Number(row?.max ?? 0);
    await sleep(treeTiming.gapMs);
    page.lft = max + 1;
    page.rgt = max + 2;
  }
}

// ---------------------------------------------------------------------------------------------
// charge_user_for_order

@Entity('users')
export class User {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 100 }) name!: string;
  @Column({ type: 'int' }) credits!: number;
}

@Entity('orders')
export class Order {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ name: 'user_id', type: 'int' }) userId!: number;
  @ManyToOne(() => User, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'user_id', foreignKeyConstraintName: 'FK_orders_user' })
  user?: User;
  @Column({ type: 'int' }) price!: number;
  @Column({ type: 'boolean', default: false, width: 1 } as ColumnOptions) paid!: boolean; // width: TypeORM 0.3 on MariaDB reads BOOLEAN back as tinyint(1)
}

// ---------------------------------------------------------------------------------------------
// Optimistic counter

export abstract class CounterColumns {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 100 }) name!: string;
  @Column({ type: 'int', default: 0 }) value!: number;
  @VersionColumn({ default: 1 }) version!: number;
}

/** save() writes only if the row still has the loaded version (else StaleEntityError). */
@Versioned()
@Entity('counters')
export class Counter extends CounterColumns {}

/** The control: TypeORM's @VersionColumn alone, which writes a stale object back (typeorm#2848). */
@Entity('counters_plain')
export class PlainCounter extends CounterColumns {}

// ---------------------------------------------------------------------------------------------
// TypeORM's own nested set

/** A category tree kept by TypeORM (`nsleft`/`nsright`); every insert, move and removal takes the tree's lock. */
@LockedTree()
@Tree('nested-set')
@Entity('categories')
export class Category {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 100 }) name!: string;
  @TreeChildren() children?: Category[];
  @TreeParent() @JoinColumn({ name: 'parent_id', foreignKeyConstraintName: 'FK_categories_parent' }) parent?: Category | null;
}

/** The control: the same tree without the lock. */
@Tree('nested-set')
@Entity('categories_unlocked')
export class UnlockedCategory {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 100 }) name!: string;
  @TreeChildren() children?: UnlockedCategory[];
  @TreeParent() @JoinColumn({ name: 'parent_id', foreignKeyConstraintName: 'FK_categories_unlocked_parent' }) parent?: UnlockedCategory | null;
}

export const exampleEntities = [Site, Page, UnlockedPage, User, Order, Counter, PlainCounter, Category, UnlockedCategory];
export const exampleSubscribers = [NestedSetSubscriber];
