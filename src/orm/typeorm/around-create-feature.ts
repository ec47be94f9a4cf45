import type { TypeOrmFeature } from './feature';

/** Placeholder: filled in by the around-create strategy. */
export const aroundCreateFeature: TypeOrmFeature = {
  name: 'around-create',
};
