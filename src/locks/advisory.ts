import { ambientTx, pinnedConnection } from '../context/store';
import { resolveInstallation } from '../installations';
import { checkFunction, optionsProblems } from '../arguments';
import { namedConnection, onNamedConnection } from '../context/transaction';
import { AdvisoryKeySet, resolveAdvisoryKeys, type AdvisoryKey } from './advisory-key';
import {
  advisoryOptionProblems,
  evaluateAdvisoryKey,
  subjectDetails,
  type AdvisoryLockContext,
  type AdvisoryLockExistsOptions,
  type AdvisoryLockOptions,
  type AdvisoryLockSkipOptions,
  type AdvisorySubject,
} from './advisory-options';
import { makePlan, type Plan } from './advisory-plan';
import { oneKeyOnly } from '../faults/keys';
import { badOption, badOptions } from '../faults/options';
import { runSessionScoped, runTransactionScoped } from './advisory-scopes';

export { advisoryKeys, AdvisoryKeySet } from './advisory-key';
export type { AdvisoryKey, AdvisoryKeyPart, AdvisoryKeyValue } from './advisory-key';

export { advisoryOptionProblems, checkAdvisoryOptionsFor, evaluateAdvisoryKey } from './advisory-options';
export type {
  AdvisoryLockContext,
  AdvisoryLockExistsOptions,
  AdvisoryLockOptions,
  AdvisoryLockSkipOptions,
  AdvisoryScope,
  AdvisorySubject,
  OnAdvisoryTimeout,
} from './advisory-options';

/**
 * Advisory locks (the strategy): `withAdvisoryLock`, `withAdvisoryLocks`, `advisoryLockExists`,
 * and the entity-write lock used by the advisory subscriber. Talks to the database only
 * through `LockDialect.advisory` and the capability flags.
 *
 * Scopes:
 * - `transaction` (default): the lock lives as long as the transaction the body runs in (the
 *   ambient one, or one opened for the call). PostgreSQL: `pg_advisory_xact_lock`, one
 *   statement, released by COMMIT/ROLLBACK. Databases without transaction-scoped advisory locks
 *   (MySQL/MariaDB: `capabilities.transactionAdvisoryLocks` false) take a session lock on the
 *   transaction's connection and release it right after that transaction ends (COMMIT or
 *   ROLLBACK), on the same connection, from the advisory subscriber's
 *   afterTransactionCommit/afterTransactionRollback — so the next holder always sees the
 *   committed data.
 * - `session`: the lock lives for the body only; it is taken on the ambient transaction's
 *   connection if there is one, else on a connection pinned for the whole call (a QueryRunner),
 *   and released in `finally` on that same connection. If that connection is lost the call
 *   fails with LockLostError, never carries on.
 *
 * The parts, one job each: advisory-plan.ts (the call's plan), advisory-held.ts (what this
 * context and each connection hold), advisory-acquire.ts (taking the locks), advisory-siblings.ts
 * (sibling calls on one connection take turns), advisory-scopes.ts (the two scopes),
 * advisory-stand-ins.ts (MySQL's session locks released after COMMIT), advisory-entity.ts
 * (entity writes).
 */

export { refuseSessionLocksUnderPooler } from './advisory-plan';
export { afterAdvisoryTransactionEnd } from './advisory-stand-ins';
export { lockForEntityWrite, type EntityAdvisoryRequest } from './advisory-entity';

// ---------------------------------------------------------------------------------------------
// public functions

/**
 * Runs `fn` while holding the advisory lock on `key` (the body starts only once the lock is
 * taken, so what it loads is fresh). `key`: string | number | bigint | an array of them (ONE
 * composite key) | `advisoryKeys(a, b, …)` (several locks, taken in one canonical order) | a
 * function returning one of these.
 *
 * ```ts
 * await withAdvisoryLock(`charge:${userId}`, async () => { … });                 // transaction scope
 * await withAdvisoryLock('nightly-report', job, { scope: 'session', timeoutMs: 0, onTimeout: 'skip' });
 * ```
 */
export function withAdvisoryLock<T>(
  key: AdvisoryKey | (() => AdvisoryKey),
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  options: AdvisoryLockSkipOptions,
): Promise<T | undefined>;
export function withAdvisoryLock<T>(
  key: AdvisoryKey | (() => AdvisoryKey),
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  options?: AdvisoryLockOptions,
): Promise<T>;
export function withAdvisoryLock<T>(
  key: AdvisoryKey | (() => AdvisoryKey),
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  options: AdvisoryLockOptions = {},
): Promise<T | undefined> {
  return runWithAdvisoryLock(key, undefined, [], fn, options, { label: 'withAdvisoryLock' });
}

/** Several distinct locks (`withAdvisoryLock(advisoryKeys(...keys), fn, options)`), taken in one canonical order. */
export function withAdvisoryLocks<T>(
  keys: AdvisoryKey[],
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  options: AdvisoryLockSkipOptions,
): Promise<T | undefined>;
export function withAdvisoryLocks<T>(keys: AdvisoryKey[], fn: (ctx: AdvisoryLockContext) => Promise<T> | T, options?: AdvisoryLockOptions): Promise<T>;
export async function withAdvisoryLocks<T>(
  keys: AdvisoryKey[],
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  options: AdvisoryLockOptions = {},
): Promise<T | undefined> {
  const subject = { label: 'withAdvisoryLocks' };
  if (!Array.isArray(keys)) throw badOption(subject.label, 'the first argument', 'an array of keys', keys, subjectDetails(subject));
  const flat = keys.flatMap((k) => (k instanceof AdvisoryKeySet ? [...k.keys] : [k]));
  return runWithAdvisoryLock(new AdvisoryKeySet(flat as any), undefined, [], fn, options, subject);
}

/**
 * The one implementation behind `withAdvisoryLock` and `@AdvisoryLock`: evaluates the key
 * (a function gets `args`, with `thisArg` as `this`), validates everything, then takes the
 * locks in the requested scope and runs `fn`. `checked`: the caller checked `fn` and the options'
 * shape already (a decorator, once when the class is defined). Never throws: every failure is
 * the returned promise's rejection.
 */
export function runWithAdvisoryLock<T>(
  key: unknown,
  thisArg: unknown,
  args: unknown[],
  fn: (ctx: AdvisoryLockContext) => Promise<T> | T,
  options: AdvisoryLockOptions | undefined,
  subject: AdvisorySubject,
  checked = false,
): Promise<T | undefined> {
  try {
    if (!checked) {
      if (typeof fn !== 'function') checkFunction(subject.label, fn, 'the body', { method: subject.method });
      const problems = advisoryOptionProblems(options);
      if (problems.length) throw badOptions(subject.label, problems, subjectDetails(subject));
    }
    const opts = options ?? {};
    const inst = resolveInstallation(subject.label, { explicit: opts.dataSource });
    const plan = makePlan(inst, evaluateAdvisoryKey(key, thisArg, args, subject), opts, subject, true);
    // a QueryRunner (or its manager) named as { dataSource }: the lock is taken on it
    if (opts.dataSource !== undefined) return onNamedConnection(inst, opts.dataSource, subject.label, () => runPlan(plan, fn));
    return runPlan(plan, fn);
  } catch (error) {
    return Promise.reject(error);
  }
}

function runPlan<T>(plan: Plan, fn: (ctx: AdvisoryLockContext) => Promise<T> | T): Promise<T | undefined> {
  return plan.scope === 'transaction' ? runTransactionScoped(plan, fn) : runSessionScoped(plan, fn);
}

/**
 * True when some connection (this one included) holds the advisory lock on `key` — in any
 * process. Runs on the ambient transaction's or pinned connection when there is one.
 *
 * ```ts
 * if (await advisoryLockExists('nightly-report')) return 'already running';
 * ```
 */
export async function advisoryLockExists(key: AdvisoryKey | (() => AdvisoryKey), options: AdvisoryLockExistsOptions = {}): Promise<boolean> {
  const subject = { label: 'advisoryLockExists' };
  const problems = optionsProblems(options, ['dataSource']);
  if (problems.length) throw badOptions(subject.label, problems, subjectDetails(subject));
  const inst = resolveInstallation(subject.label, { explicit: options.dataSource });
  const value = evaluateAdvisoryKey(key, undefined, [], subject);
  if (value instanceof AdvisoryKeySet) throw oneKeyOnly(subject.label, subjectDetails(subject));
  const [resolved] = resolveAdvisoryKeys(value, inst.settings.namespace, subject);
  const qr = namedConnection(inst, options.dataSource, subject.label) ?? ambientTx(inst)?.connection ?? pinnedConnection(inst);
  const run = qr ? (sql: string, p?: unknown[]) => qr.query(sql, p) : (sql: string, p?: unknown[]) => inst.port.query(sql, p);
  return inst.dialect.advisory.isLocked(run, inst.dialect.advisory.lockId(resolved));
}

/**
 * The lock id a key gets on an installed DataSource's database (PostgreSQL: the signed 64-bit
 * integer as text; MySQL/MariaDB: the GET_LOCK name), for diagnostics and tests.
 */
export function advisoryLockId(key: AdvisoryKey, options: AdvisoryLockExistsOptions = {}): string[] {
  const subject = 'advisoryLockId';
  const inst = resolveInstallation(subject, { explicit: options?.dataSource });
  return resolveAdvisoryKeys(key, inst.settings.namespace, subject).map((r) => inst.dialect.advisory.lockId(r));
}
