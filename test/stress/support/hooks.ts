/**
 * Root hooks of `npm run stress` (listed in .mocharc.stress.json BEFORE test/support/hooks.ts,
 * whose afterAll drops the test databases): stop the shared workers and Redis nodes, then
 * print the summary.
 */
import { closeAll } from './shared';
import { renderSummary } from './summary';

export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await closeAll();
    console.log(renderSummary());
  },
};
