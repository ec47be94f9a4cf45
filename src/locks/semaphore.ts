/**
 * Counting semaphores on the database (the strategy behind `withSemaphore` and `@Semaphore`):
 * at most `permits` bodies of one name at once, across processes.
 *
 * A semaphore of N permits is N advisory locks, its slots (`[namespace] semaphore:<name>#<i>`),
 * held until the transaction ends (transaction scope) or the body ends (session scope). When
 * `withSemaphore` opens the transaction itself, each try is one statement over all the slots that
 * also draws the token (semaphore-slots.ts). Otherwise (a caller's transaction, session scope) the
 * slots are taken through the advisory strategy with `timeoutMs: 0` (PostgreSQL
 * `pg_try_advisory_xact_lock`, MySQL/MariaDB `GET_LOCK(name, 0)`), one per statement, starting at
 * a random one, so scopes, pooler rules, lost connections, MySQL's release at transaction end and
 * the turns of sibling bodies on one connection are the advisory locks' own; the token is then
 * drawn on the slot's own connection. When all slots are held a caller sleeps (5 ms doubling to
 * 200 ms, with jitter, never past its deadline) and tries again. So waiters are NOT served in
 * arrival order: a newcomer may take a slot freed while an older waiter sleeps.
 *
 * Tokens come from the database's token sequence (`<fencing table>_seq`, created by
 * `createFencingTable`; never rolled back, no lock until commit). Every token is distinct, and a
 * grant made after a permit was handed out draws a larger one.
 */
import { transaction } from '../context/transaction';
import { checkFunction } from '../arguments';
import { badOptions } from '../faults/options';
import { permitsAllHeld, permitTimedOut, semaphoreWithoutSequence } from '../faults/semaphores';
import { resolveInstallation, type Installation } from '../installations';
import { DEFAULT_FENCING_TABLE } from '../redis/fencing';
import { runWithAdvisoryLock } from './advisory';
import type { AdvisoryLockContext, AdvisorySubject } from './advisory-options';
import {
  checkPermits,
  checkSemaphoreName,
  semaphoreOptionProblems,
  semaphoreOptionsFine,
  type SemaphoreOptions,
  type SemaphorePermit,
  type SemaphoreSkipOptions,
} from './semaphore-options';
import { missingTokenSequence, runOnFreeSlot, runPermitBody, slotPathApplies, slotPlan } from './semaphore-slots';

export type { SemaphoreOptions, SemaphorePermit, SemaphoreSkipOptions } from './semaphore-options';

const FIRST_BACKOFF_MS = 5;
const MAX_BACKOFF_MS = 200;

/**
 * Runs `fn` holding one of `permits` permits of the semaphore `name` (at most `permits` bodies
 * at once, in every process on this database). The body receives `{ token, signal, slot }`.
 *
 * ```ts
 * await withSemaphore('report-export', 3, async (permit) => exportReport(id, permit.signal));
 * await withSemaphore('geo-api', 5, call, { timeoutMs: 2000, onTimeout: 'skip' }); // undefined when none came free
 * ```
 */
export function withSemaphore<T>(
  name: string,
  permits: number,
  fn: (permit: SemaphorePermit) => Promise<T> | T,
  options: SemaphoreSkipOptions,
): Promise<T | undefined>;
export function withSemaphore<T>(name: string, permits: number, fn: (permit: SemaphorePermit) => Promise<T> | T, options?: SemaphoreOptions): Promise<T>;
export function withSemaphore<T>(
  name: string,
  permits: number,
  fn: (permit: SemaphorePermit) => Promise<T> | T,
  options: SemaphoreOptions = {},
): Promise<T | undefined> {
  return runWithSemaphore(name, permits, fn, options, { label: `withSemaphore(${JSON.stringify(String(name))})` });
}

/** The one implementation behind `withSemaphore` and `@Semaphore`; bad arguments reject (never a synchronous throw). */
export function runWithSemaphore<T>(
  name: string,
  permits: number,
  fn: (permit: SemaphorePermit) => Promise<T> | T,
  options: SemaphoreOptions | undefined,
  subject: AdvisorySubject,
): Promise<T | undefined> {
  try {
    checkSemaphoreName(name, subject.label);
    checkPermits(permits, subject.label, name);
    checkFunction(subject.label, fn, 'the body', { method: subject.method });
    const problems = semaphoreOptionsFine(options) ? [] : semaphoreOptionProblems(options);
    if (problems.length) throw badOptions(subject.label, problems, { key: name, method: subject.method });
    const opts: SemaphoreOptions = options ?? {};
    const inst = resolveInstallation(subject.label, { explicit: opts.dataSource });
    const fencing = inst.dialect.fencing;
    if (!inst.dialect.capabilities.tokenSequences || !fencing?.nextSequenceSql) {
      throw semaphoreWithoutSequence(subject.label, inst.dialect.name, { key: name, method: subject.method });
    }
    const scope = opts.scope ?? 'transaction';
    const timeoutMs = opts.timeoutMs ?? inst.settings.advisoryTimeoutMs;
    const startedAt = Date.now();
    const deadline = timeoutMs === undefined ? Infinity : startedAt + timeoutMs;

    // Between tries: 5 ms doubling to 200 ms, with jitter, never past the deadline; false once it passed.
    let backoff = FIRST_BACKOFF_MS;
    const wait = async (): Promise<boolean> => {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, backoff * (0.5 + Math.random()))));
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      return true;
    };

    // One slot per statement, through the advisory strategy (scopes, siblings of a caller's transaction).
    const waitForPermit = async (): Promise<{ got: boolean; result?: T }> => {
      for (;;) {
        const first = Math.floor(Math.random() * permits);
        for (let k = 0; k < permits; k++) {
          const slot = (first + k) % permits;
          let got = false;
          const result = await runWithAdvisoryLock(
            [`semaphore:${name}`, slot],
            undefined,
            [],
            async (ctx: AdvisoryLockContext) => {
              got = true;
              const token = await drawToken(inst, ctx, fencing.nextSequenceSql!(DEFAULT_FENCING_TABLE), subject, name);
              return runPermitBody(fn, token, slot);
            },
            { scope, timeoutMs: 0, onTimeout: 'skip', dataSource: opts.dataSource },
            subject,
          );
          if (got) return { got, result: result as T };
        }
        if (!(await wait())) return { got: false };
      }
    };

    // Transaction scope in a transaction opened here: every slot tried in one statement (semaphore-slots.ts).
    const plan = scope === 'transaction' && slotPathApplies(inst, opts.dataSource, subject.label) ? slotPlan(inst, name, permits, subject) : undefined;
    // Transaction scope: every try runs in one transaction (the ambient one, or one opened here),
    // so a slot taken is held until it ends and a failed try costs one statement.
    const outcome = (o: { got: boolean; result?: T }): T | undefined => {
      if (o.got) return o.result;
      const waitedMs = Date.now() - startedAt;
      if (opts.onTimeout === 'skip') return undefined;
      const details = { key: name, permits, method: subject.method, waitedMs };
      if (timeoutMs === 0) {
        throw permitsAllHeld(subject.label, name, permits, details);
      }
      throw permitTimedOut(subject.label, name, permits, timeoutMs, details);
    };
    const tries = plan
      ? runOnFreeSlot(plan, subject, fn, wait)
      : scope === 'transaction'
        ? transaction(waitForPermit, { dataSource: inst.port.target })
        : waitForPermit();
    return tries.then(outcome);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The permit's fencing token, from the token sequence, on the slot's own connection. */
async function drawToken(inst: Installation, ctx: AdvisoryLockContext, sql: string, subject: AdvisorySubject, name: string): Promise<bigint> {
  try {
    const rows = await ctx.queryRunner.query(sql);
    return BigInt(rows[0].token);
  } catch (error) {
    if (inst.dialect.fencing!.isMissingTable(error)) throw missingTokenSequence(subject, name, error);
    throw inst.dialect.convertError(error, { key: name, method: subject.method }) ?? error;
  }
}
