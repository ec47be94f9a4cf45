import type { TypeOrmFeature } from './feature';

/** Placeholder: filled in by the advisory strategy. */
export const advisoryFeature: TypeOrmFeature = {
  name: 'advisory',
};
