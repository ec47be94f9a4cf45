/**
 * The connection model against the database at volume: 5,000 generated programs per database
 * (STRESS_MODEL_RUNS overrides), with a new seed each run, printed so that a failure can be
 * replayed (STRESS_MODEL_SEED=<seed>). See test/support/model-program.ts.
 */
import { EDGE_ENTITIES } from '../fixtures/edges';
import { runPrograms, worldOf } from '../support/model-program';
import { describeEachBackend } from '../support/suite';

const RUNS = Number(process.env.STRESS_MODEL_RUNS ?? 5_000);
const SEED = Number(process.env.STRESS_MODEL_SEED ?? Date.now() % 2_147_483_647);

describeEachBackend('stress: the connection model against the database', EDGE_ENTITIES, (env) => {
  it(`${RUNS} generated programs (seed printed)`, async function () {
    this.timeout(30 * 60_000);
    const world = await worldOf(env);
    console.log(`      seed ${SEED} (replay: STRESS_MODEL_SEED=${SEED} npm run stress)`);
    const started = Date.now();
    const steps = await runPrograms(world, SEED, RUNS);
    console.log(`      ${RUNS} programs, ${steps} steps, ${Math.round((Date.now() - started) / 1000)} s`);
  });
});
