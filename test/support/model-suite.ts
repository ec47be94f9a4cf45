/**
 * The model-based tests of one world (TypeORM or MikroORM, one database): a seeded run of
 * programs without kills, a seeded run with killed connections among the steps, a deliberately
 * broken model that must be caught and shrink to at most 6 steps, and the shrunk regressions.
 */
import { expect } from 'chai';
import * as fc from 'fast-check';
import { modelFaults } from '../../src/context/connection-model';
import type { DialectCapabilities } from '../../src';
import { killStep, killTimes } from './model-kill';
import { describeStep, programArbitrary, runProgram, runPrograms, type ProgramOptions, type Step, type World } from './model-program';

export const SEED = 20_261_203;
/** Programs per database without kills (`npm test`), and with kills (a kill costs a connection and its checks). */
export const RUNS = 200;
export const KILL_RUNS = 100;
export const WITH_KILLS: ProgramOptions = { extra: [{ weight: 3, step: killStep }] };

const summary = (counts: Map<string, number>) =>
  [...counts]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([t, n]) => `${t} ${n}`)
    .join(', ');

export function modelBasedSuite(makeWorld: () => Promise<World>, capabilities: () => DialectCapabilities, regressions: Array<[string, Step[]]>): void {
  let world: World;
  before(async () => {
    world = await makeWorld();
  });

  it(`${RUNS} seeded programs: after every step the model matches the database and a second worker`, async function () {
    this.timeout(120_000);
    const started = Date.now();
    const { steps, counts } = await runPrograms(world, SEED, RUNS);
    console.log(`      ${RUNS} programs, ${steps} steps, ${Date.now() - started} ms (seed ${SEED}): ${summary(counts)}`);
  });

  it(`${KILL_RUNS} seeded programs with killed connections: the calls reject with LockLostError, nothing commits, the pool stays usable`, async function () {
    this.timeout(120_000);
    const started = Date.now();
    killTimes.length = 0;
    const { steps, counts } = await runPrograms(world, SEED + 1, KILL_RUNS, WITH_KILLS);
    const worst = killTimes.length ? Math.max(...killTimes) : 0;
    console.log(
      `      ${KILL_RUNS} programs, ${steps} steps, ${killTimes.length} kills (rejected within ${worst} ms at worst), ${Date.now() - started} ms (seed ${SEED + 1}): ${summary(counts)}`,
    );
    expect(killTimes.length, 'kills that hit an open scope').to.be.at.least(20);
  });

  it('a broken model (forgets what a savepoint rollback drops) is caught and shrinks to at most 6 steps', async function () {
    const caps = capabilities();
    if (!caps.rollbackToSavepointReleasesLocks && !caps.rollbackToSavepointReleasesRowLocks) return this.skip(); // nothing to forget: the database keeps its locks
    this.timeout(120_000);
    modelFaults.forgetSavepointDrop = true;
    let details: fc.RunDetails<[Step[]]>;
    try {
      details = await fc.check(
        fc.asyncProperty(programArbitrary(world), (program) => runProgram(program, world)),
        { seed: SEED, numRuns: 500 },
      );
    } finally {
      modelFaults.forgetSavepointDrop = false;
    }
    expect(details.failed, 'the run caught the broken model').to.equal(true);
    const [shrunk] = details.counterexample!;
    console.log(`      shrunk to ${shrunk.length} steps: ${shrunk.map(describeStep).join(', ')}`);
    expect(shrunk.length).to.be.at.most(6);
    expect(String(details.errorInstance)).to.match(
      /model says mb-[ab] held .* the database says free|model says the row is locked, another connection finds it free/,
    );
  });

  describe('regressions (shrunk programs)', () => {
    for (const [name, program] of regressions) {
      it(name, async () => {
        await runProgram(program, world, program.some((s) => s.t === 'kill') ? WITH_KILLS : {});
      });
    }
  });
}
