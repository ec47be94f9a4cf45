import type { DataSource, EntityMetadata, EntitySubscriberInterface } from 'typeorm';
import type { LockDialect } from '../../dialects/dialect';
import type { EntityLockMetadata } from '../../metadata/registry';

export interface InstallContext {
  readonly dataSource: DataSource;
  readonly dialect: LockDialect;
}

/**
 * One strategy's part of `installLocking`: validate what its class decorators declared
 * (throwing LockConfigError naming entity and property) and give the subscribers it needs.
 * installLocking runs every feature's `validate` before it changes anything.
 */
export interface TypeOrmFeature {
  readonly name: string;
  validate?(entity: EntityMetadata, declared: EntityLockMetadata, ctx: InstallContext): void;
  /**
   * Process-wide hooks this feature needs (idempotent, inert unless ormlock marked the work),
   * installed once validation of every feature has passed.
   */
  install?(): void;
  /** Subscribers placed before all others on the DataSource, in feature order. */
  subscribers?(ctx: InstallContext): EntitySubscriberInterface[];
}
