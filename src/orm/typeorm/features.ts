import type { TypeOrmFeature } from './feature';
import { pessimisticFeature } from './pessimistic-feature';

/** Every strategy that takes part in installLocking, in the order their subscribers run. */
export const features: TypeOrmFeature[] = [pessimisticFeature];
