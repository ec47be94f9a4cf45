import { versioned, type VersionedOptions } from '../src/locks/optimistic';
import { checkDecoratorOptions, rejectStandardDecorator } from './wrap-method';

/**
 * Optimistic locking for an entity class that has a `@VersionColumn`: every `save()` (update
 * path) and `remove()` of a loaded object writes only if the row still has the version the
 * object holds (`… WHERE id = ? AND version = ?`, affected rows checked). Otherwise nothing is
 * written and `StaleEntityError` (entity, id, expected and current version) is thrown. On
 * success the object's version is the new one. Twin: `versioned(EntityClass)`.
 *
 * ```ts
 * @Versioned()
 * @Entity()
 * class Counter {
 *   @PrimaryGeneratedColumn() id!: number;
 *   @Column() value!: number;
 *   @VersionColumn() version!: number;
 * }
 * ```
 * Without a `@VersionColumn`, `installLocking` throws `LockConfigError` naming the entity.
 * Writes that check no version (`update()`, `delete()`, `upsert()`, …) are refused with
 * `LockConfigError`; `@Versioned({ uncheckedWrites: 'allow' })` lets them run unchecked.
 */
export function Versioned(options: VersionedOptions = {}): ClassDecorator {
  checkDecoratorOptions('Versioned', options);
  return ((target: Function, context?: unknown) => {
    rejectStandardDecorator('Versioned', target, context);
    versioned(target, options);
  }) as ClassDecorator;
}
