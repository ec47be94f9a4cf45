/**
 * The connection model against the database at volume, on TypeORM and MikroORM: 5,000 generated
 * programs per database (STRESS_MODEL_RUNS overrides), and a tenth as many with killed
 * connections among the steps, with a new seed each run, printed so that a failure can be
 * replayed (STRESS_MODEL_SEED=<seed>). See test/support/model-program.ts.
 */
import { EDGE_ENTITIES } from '../fixtures/edges';
import { MkLcRow } from '../fixtures/lost-connection';
import { describeEachMikroBackend } from '../support/mikro-suite';
import { runPrograms, type World } from '../support/model-program';
import { WITH_KILLS } from '../support/model-suite';
import { mikroWorld, typeormWorld } from '../support/model-worlds';
import { describeEachBackend } from '../support/suite';

const RUNS = Number(process.env.STRESS_MODEL_RUNS ?? 5_000);
const KILL_RUNS = Math.max(1, Math.round(RUNS / 10));
const SEED = Number(process.env.STRESS_MODEL_SEED ?? Date.now() % 2_147_483_647);

function stressRun(makeWorld: () => Promise<World>): void {
  it(`${RUNS} generated programs, ${KILL_RUNS} with killed connections (seed printed)`, async function () {
    this.timeout(30 * 60_000);
    const world = await makeWorld();
    console.log(`      seed ${SEED} (replay: STRESS_MODEL_SEED=${SEED} npm run stress)`);
    let started = Date.now();
    const plain = await runPrograms(world, SEED, RUNS);
    console.log(`      ${RUNS} programs, ${plain.steps} steps, ${Math.round((Date.now() - started) / 1000)} s`);
    started = Date.now();
    const killed = await runPrograms(world, SEED + 1, KILL_RUNS, WITH_KILLS);
    console.log(
      `      ${KILL_RUNS} programs with kills, ${killed.steps} steps (${killed.counts.get('kill') ?? 0} kill steps), ${Math.round((Date.now() - started) / 1000)} s`,
    );
  });
}

describeEachBackend('stress: the connection model against the database', EDGE_ENTITIES, (env) => stressRun(() => typeormWorld(env)));
describeEachMikroBackend('stress: the connection model against the database', [MkLcRow], (env) => stressRun(() => mikroWorld(env)));
