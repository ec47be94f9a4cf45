/**
 * The connection model against the database, by generated programs (see test/support/model-program.ts):
 * a seeded run of 200 programs per database, a deliberately broken model that the run must catch and
 * shrink to a few steps, and the shrunk failures found on the way, kept as named regressions.
 */
import { expect } from 'chai';
import * as fc from 'fast-check';
import { modelFaults } from '../src/context/connection-model';
import { EDGE_ENTITIES } from './fixtures/edges';
import { describeStep, programArbitrary, runProgram, runPrograms, worldOf, type Step, type World } from './support/model-program';
import { describeEachBackend } from './support/suite';

const SEED = 20_261_203;
const RUNS = 200;

describeEachBackend('the connection model against the database', EDGE_ENTITIES, (env) => {
  let world: World;
  before(async () => {
    world = await worldOf(env);
  });

  it(`${RUNS} seeded programs: after every step the model matches the database and a second worker`, async function () {
    this.timeout(120_000);
    const started = Date.now();
    const steps = await runPrograms(world, SEED, RUNS);
    console.log(`      ${RUNS} programs, ${steps} steps, ${Date.now() - started} ms (seed ${SEED})`);
  });

  it('a broken model (forgets what a savepoint rollback drops) is caught and shrinks to at most 6 steps', async function () {
    const caps = env.handle.dialect.capabilities;
    if (!caps.rollbackToSavepointReleasesLocks && !caps.rollbackToSavepointReleasesRowLocks) return this.skip(); // nothing to forget: the database keeps its locks
    this.timeout(120_000);
    modelFaults.forgetSavepointDrop = true;
    let details: fc.RunDetails<[Step[]]>;
    try {
      details = await fc.check(fc.asyncProperty(programArbitrary(), (program) => runProgram(program, world)), { seed: SEED, numRuns: 500 });
    } finally {
      modelFaults.forgetSavepointDrop = false;
    }
    expect(details.failed, 'the run caught the broken model').to.equal(true);
    const [shrunk] = details.counterexample!;
    console.log(`      shrunk to ${shrunk.length} steps: ${shrunk.map(describeStep).join(', ')}`);
    expect(shrunk.length).to.be.at.most(6);
    expect(String(details.errorInstance)).to.match(/model says mb-[ab] held .* the database says free|model says the row is locked, another connection finds it free/);
  });

  describe('regressions (shrunk programs)', () => {
    const regression = (name: string, program: Step[]) =>
      it(name, async () => {
        await runProgram(program, world);
      });

    regression('a lock taken in a savepoint that rolls back is gone, and taken again by the next call', [
      { t: 'tx' }, { t: 'tx' }, { t: 'xlock', key: 'mb-a' }, { t: 'end' }, { t: 'throw' }, { t: 'worker', key: 'mb-a' }, { t: 'xlock', key: 'mb-a' }, { t: 'worker', key: 'mb-a' },
    ]);
    regression('siblings inside a session lock (no transaction): each opens its own transaction on the pinned connection, one after another', [
      { t: 'slock', key: 'mb-a' }, { t: 'siblings', key: 'mb-b', secondTimeoutMs: 0 }, { t: 'worker', key: 'mb-a' },
    ]);
    regression('a session lock inside a transaction that throws is released on the same connection', [
      { t: 'tx' }, { t: 'slock', key: 'mb-a' }, { t: 'throw' }, { t: 'worker', key: 'mb-a' }, { t: 'throw' },
    ]);
    regression('a lock body whose key its transaction already held: siblings inside it do not queue behind it (they hung)', [
      { t: 'tx' }, { t: 'worker', key: 'mb-a' }, { t: 'siblings', key: 'mb-a', secondTimeoutMs: 20 }, { t: 'xlock', key: 'mb-a' }, { t: 'worker', key: 'mb-a' }, { t: 'worker', key: 'mb-a' }, { t: 'siblings', key: 'mb-a', secondTimeoutMs: 0 },
    ]);
    regression('a row lock taken in a savepoint that rolls back is gone (PostgreSQL and MariaDB both release it)', [
      { t: 'xlock', key: 'mb-a' }, { t: 'tx' }, { t: 'row' }, { t: 'throw' }, { t: 'worker', key: 'mb-a' },
    ]);
    regression('a timed row lock, then an untimed advisory lock in the same transaction', [
      { t: 'tx' }, { t: 'row', timeoutMs: 200 }, { t: 'xlock', key: 'mb-a' }, { t: 'tx' }, { t: 'row' }, { t: 'throw' }, { t: 'worker', key: 'mb-a' },
    ]);
  });
});
