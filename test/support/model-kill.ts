/**
 * The killed-connection step of the generated programs (test/support/model-program.ts): the
 * innermost scope writes a marked row, then its connection is killed from outside
 * (`pg_terminate_backend`, MariaDB `KILL`, test/support/kill-connection.ts). Then:
 * - every ormlock call on that connection (transaction(), withAdvisoryLock of either scope)
 *   rejects with LockLostError, the driver's error as cause, at once — before its body ends;
 * - every scope of the ORM's own on it (a nested transaction, a user's QueryRunner or em.begin)
 *   fails too, once its body ends — none resolves as if it had committed;
 * - nothing of the transaction commits (the marked row is not there; written outside a
 *   transaction — a session lock's body — it is);
 * - the model and the database agree (the driver's check after every step), a second worker
 *   takes every key the model says is free and none it says is held;
 * - the pool stays usable: statements on several pool connections at once succeed.
 */
import * as fc from 'fast-check';
import { connectionGone, killConnection } from './kill-connection';
import { KEYS, describeStep, isLockLost, sleep, type ExtraStep, type Step } from './model-program';

/** How long an ormlock call may take to reject after the kill was sent (the lock signal: about a second at most). */
const REJECT_WITHIN_MS = 2_000;

let markers = 0;
/** The mark of the row the innermost scope wrote before the kill (the steps run one at a time). */
let note: string | undefined;

export const killStep: ExtraStep & { name: string } = {
  name: 'kill',
  arbitrary: fc.constant<Step>({ t: 'kill' }),
  async inScope(_step, world, target) {
    note = `kill-${process.pid}-${++markers}`;
    await world.write(target, note);
  },
  async drive(_step, control) {
    const { scopes, world } = control;
    const top = scopes[scopes.length - 1];
    if (!top?.connection) return;
    const marked = note;
    note = undefined;
    if (marked === undefined) return control.fail('kill: the innermost scope wrote no marked row');
    const id = control.idOf(top.connection);
    if (id === undefined) return control.fail("kill: the innermost scope's connection has no id");
    const first = scopes.findIndex((s) => s.connection !== undefined && control.idOf(s.connection) === id);
    const victims = scopes.slice(first);
    control.doom(first);
    const killedAt = Date.now();
    await killConnection(world.backend, Number(id));
    // ormlock's calls reject at once, before their bodies end
    for (const v of victims.filter((s) => s.ormlock)) {
      const outcome = await Promise.race([v.outcome, sleep(REJECT_WITHIN_MS).then(() => 'pending' as const)]);
      if (outcome === 'pending') control.fail(`kill: ${describeStep(v.step)} did not reject within ${REJECT_WITHIN_MS} ms of the kill`);
      else if (!isLockLost(outcome.error)) control.fail(`kill: ${describeStep(v.step)} ${describe(outcome.error)}, not a LockLostError with a cause`);
    }
    const rejectedIn = Date.now() - killedAt;
    // the bodies end; every scope on the connection fails
    for (const { scope, error } of await control.closeFrom(first, true)) {
      if (error === undefined) control.fail(`kill: ${describeStep(scope.step)} resolved after its connection was killed`);
    }
    const written = await world.count(marked);
    if (written !== (top.inTx ? 0 : 1))
      control.fail(
        `kill: ${written} marked row(s) after the kill, ${top.inTx ? 'in a killed transaction (none may commit)' : 'written outside a transaction (it stays)'}`,
      );
    // the pool stays usable
    const probes = await Promise.allSettled([1, 2, 3].map(() => world.queryOutside('SELECT 1 AS one')));
    for (const p of probes) if (p.status === 'rejected') control.fail(`kill: a pool connection failed afterwards: ${(p.reason as Error).message}`);
    // a second worker agrees with the model, once the killed session has ended: it frees its
    // session locks as it ends, not when KILL returns (seen on a starved CI machine)
    await connectionGone(world.backend, Number(id)).catch((error: Error) => control.fail(`kill: ${error.message}`));
    for (const k of KEYS) {
      const held = control.modelHolds(k);
      const took = await control.workerTakes(k);
      if (took !== undefined && took === held)
        control.fail(`kill: the worker ${took ? 'took' : 'could not take'} ${k} while the model says it is ${held ? 'held' : 'free'}`);
    }
    killTimes.push(rejectedIn);
  },
};

function describe(error: unknown): string {
  return error === undefined ? 'resolved' : `rejected with ${(error as Error).name}: ${(error as Error).message}`;
}

/** The ms from each kill to the last ormlock call's rejection (for the run's note). */
export const killTimes: number[] = [];
