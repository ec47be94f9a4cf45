import type { TypeOrmFeature } from './feature';

/** Placeholder: filled in by the versioned strategy. */
export const versionedFeature: TypeOrmFeature = {
  name: 'versioned',
};
