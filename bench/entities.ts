import { Column, Entity, PrimaryGeneratedColumn, VersionColumn } from 'typeorm';

/**
 * The benchmark's "charge a user" tables. Three classes with the same columns so that a
 * decoration made at run time (e.g. `@Versioned()` on {@link BenchVersionedUser}) never
 * touches the table the hand-written code works on.
 */

/** Used by every row-lock / advisory / unlocked variant. */
@Entity('bench_users')
export class BenchUser {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) credits!: number;
}

/**
 * For `@Versioned()` + `@RetryOnConflict()`. `@Versioned()` is applied at run time by
 * charge-variants.ts, and only when src/index.ts exports it.
 */
@Entity('bench_versioned_users')
export class BenchVersionedUser {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) credits!: number;
  @VersionColumn() version!: number;
}

/**
 * The hand-written optimistic twin (`UPDATE … WHERE id = ? AND version = ?`, retry loop) and
 * the statement-count reference for "the same work unversioned" (findOne + save). Never
 * decorated by ormlock.
 */
@Entity('bench_hand_versioned_users')
export class BenchHandVersionedUser {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) credits!: number;
  @VersionColumn() version!: number;
}

export const BENCH_ENTITIES = [BenchUser, BenchVersionedUser, BenchHandVersionedUser];
export type BenchEntity = (typeof BENCH_ENTITIES)[number];

/** Rows per table; the "spread" distribution picks one of them at random per operation. */
export const ROW_COUNT = 1000;
/** Large enough that no run ever reaches zero. */
export const INITIAL_CREDITS = 1_000_000_000;
