import type { DataSource, EntityMetadata, EntitySubscriberInterface } from 'typeorm';
import type { LockDialect } from '../../dialects/dialect';
import type { EntityLockMetadata } from '../../metadata/registry';
import type { Installation, InstallationSettings } from '../../installations';

export interface InstallContext {
  readonly dataSource: DataSource;
  readonly dialect: LockDialect;
  readonly settings: InstallationSettings;
}

/**
 * One strategy's part of `installLocking`: validate what its class decorators declared
 * (throwing LockConfigError naming entity and property) and give the subscribers it needs.
 * installLocking runs every feature's `validate` before it changes anything; the patches of
 * TypeORM internals the features rely on are chosen in internals/index.ts.
 */
export interface TypeOrmFeature {
  readonly name: string;
  validate?(entity: EntityMetadata, declared: EntityLockMetadata, ctx: InstallContext): void;
  /** Subscribers appended to the DataSource's (after the user's own), in feature order. */
  subscribers?(inst: Installation): EntitySubscriberInterface[];
}
