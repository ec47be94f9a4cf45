import { advisoryFeature } from './advisory-feature';
import { aroundCreateFeature } from './around-create-feature';
import type { TypeOrmFeature } from './feature';
import { pessimisticFeature } from './pessimistic-feature';
import { versionedFeature } from './versioned-feature';
import { lockedTreeFeature } from './locked-tree-feature';

/**
 * Every strategy that takes part in installLocking. Their subscribers run in this order,
 * after the user's own (TypeORM starts them all at once): @AroundCreate first (its lock must precede everything that
 * computes values under it), then entity advisory locks, then the version check.
 */
export const features: TypeOrmFeature[] = [lockedTreeFeature, aroundCreateFeature, advisoryFeature, versionedFeature, pessimisticFeature];
