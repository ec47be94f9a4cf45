import { teardownBackends } from './backends';

/** Root hooks for every mocha run. */
export const mochaHooks = {
  async afterAll() {
    await teardownBackends();
  },
};
