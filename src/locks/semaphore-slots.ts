/**
 * The one-statement acquisition of a database semaphore's permit, used when `withSemaphore`
 * opens the transaction itself (transaction scope, no ambient transaction of the installation):
 * each try is ONE statement that takes the first free slot of the N, starting at a random one,
 * and draws the fencing token in the same statement (the dialect's `lockFirstFree`). So an
 * uncontended permit costs BEGIN, that statement and COMMIT (MySQL/MariaDB: and RELEASE_LOCK
 * after it, the session lock standing in for a transaction one, as advisory locks do), where the
 * per-slot path (semaphore.ts) sends one statement per slot tried plus one for the token.
 *
 * Inside a caller's transaction the per-slot path is kept: there, other bodies of the same
 * transaction may hold slots on the same connection (where the database's locks are re-entrant),
 * and the advisory strategy's sibling turns keep them apart.
 */
import { namedConnection, transaction } from '../context/transaction';
import { ambientTx } from '../context/store';
import { noteLock } from '../context/connection-model';
import { lockLostError, runLockedBody } from '../context/lock-scope';
import { LockConfigError, LockLostError } from '../errors';
import type { Installation } from '../orm/installations';
import { DEFAULT_FENCING_TABLE } from '../redis/fencing';
import { refuseSessionLocksUnderPooler } from './advisory';
import { resolveAdvisoryKeys, type ResolvedAdvisoryKey } from './advisory-key';
import type { AdvisorySubject } from './advisory-options';
import type { SemaphorePermit } from './semaphore-options';
import { LockScope, runInLockScope } from '../context/lock-signal';

/** What one semaphore call needs to try its slots: made once per call. */
export interface SlotPlan {
  readonly inst: Installation;
  readonly name: string;
  readonly subject: AdvisorySubject;
  /** The slots' keys and the database's ids of them, in slot order. */
  readonly keys: readonly ResolvedAdvisoryKey[];
  readonly ids: readonly string[];
  /** The key the statement's comment names (`semaphore:<name>`, for inspectors). */
  readonly display: ResolvedAdvisoryKey;
  /** The token expression (the sequence's next value). */
  readonly token: string;
}

/** Plans made, per installation and `name#permits` (a name's keys are hashed once, not per call); at most PLANS_KEPT each. */
const plans = new WeakMap<Installation, Map<string, SlotPlan | null>>();
const PLANS_KEPT = 1000;

/** The plan, when the dialect can try every slot in one statement; undefined otherwise. */
export function slotPlan(inst: Installation, name: string, permits: number, subject: AdvisorySubject): SlotPlan | undefined {
  let known = plans.get(inst);
  if (!known) plans.set(inst, (known = new Map()));
  const id = `${permits}#${name}`;
  let plan = known.get(id);
  if (plan === undefined) {
    if (known.size >= PLANS_KEPT) known.clear();
    known.set(id, (plan = makePlan(inst, name, permits, subject)));
  }
  return plan === null ? undefined : { ...plan, subject };
}

function makePlan(inst: Installation, name: string, permits: number, subject: AdvisorySubject): SlotPlan | null {
  const adv = inst.dialect.advisory;
  const token = inst.dialect.fencing?.nextSequenceExpression?.(DEFAULT_FENCING_TABLE);
  if (!adv.lockFirstFree || token === undefined) return null;
  const namespace = inst.settings.namespace;
  const keys = Array.from({ length: permits }, (_, i) => resolveAdvisoryKeys([`semaphore:${name}`, i], namespace, subject)[0]);
  const [display] = resolveAdvisoryKeys(`semaphore:${name}`, namespace, subject);
  return { inst, name, subject, keys, ids: keys.map((k) => adv.lockId(k)), display, token };
}

/** Whether this call may take the one-statement path: it opens the transaction itself, on a pool (or pinned) connection, not on a named one. */
export function slotPathApplies(inst: Installation, explicit: unknown, label: string): boolean {
  return ambientTx(inst) === undefined && namedConnection(inst, explicit, label) === undefined;
}

/**
 * In a transaction opened here: tries the slots (one statement per try; `wait()` between tries,
 * false when the caller's deadline passed) until one is taken, then runs `fn` holding it.
 */
export async function runOnFreeSlot<T>(
  plan: SlotPlan,
  fn: (permit: SemaphorePermit) => Promise<T> | T,
  wait: () => Promise<boolean>,
): Promise<{ got: boolean; result?: T }> {
  const { inst, subject } = plan;
  refuseSessionLocksUnderPooler(inst, 'transaction', subject);
  const native = inst.dialect.capabilities.transactionAdvisoryLocks;
  const startedAt = Date.now();
  return transaction(async () => {
    const qr = ambientTx(inst)!.connection;
    const n = plan.ids.length;
    for (;;) {
      const first = Math.floor(Math.random() * n);
      const order = first === 0 ? plan.ids : [...plan.ids.slice(first), ...plan.ids.slice(0, first)];
      let got: { index: number; token: string | null } | null;
      try {
        got = await inst.dialect.advisory.lockFirstFree!(qr, order, plan.token, plan.display);
      } catch (error) {
        throw explain(plan, error);
      }
      if (got) {
        const slot = (got.index + first) % n;
        const key = plan.keys[slot];
        noteLock(qr, { inst, kind: 'advisory', id: plan.ids[slot], display: key.display }, native ? 'transaction' : 'until-end', inst.dialect.capabilities.rollbackToSavepointReleasesLocks);
        inst.emit({ type: 'acquired', kind: 'advisory', target: key.display, waitedMs: Date.now() - startedAt });
        const body = { inst, connection: qr, lost: (cause: unknown) => lockLostError(subject.label, `semaphore ${JSON.stringify(plan.name)} slot ${slot}`, { key: plan.name, method: subject.method, cause }) };
        const token = BigInt(got.token ?? '0');
        // the slot's lock scope is the permit's: its signal aborts when the connection dies, or when the body throws LockLostError
        return { got: true, result: await runLockedBody(body, (scope) => permitBody(scope, fn, token, slot)) };
      }
      inst.emit({ type: 'not_available', kind: 'advisory', target: plan.display.display, waitedMs: Date.now() - startedAt });
      if (!(await wait())) return { got: false };
    }
  }, { dataSource: inst.port.target });
}

/** Runs the body under `scope` (its signal made only when asked for); a LockLostError the body throws aborts it. */
async function permitBody<T>(scope: LockScope, fn: (permit: SemaphorePermit) => Promise<T> | T, token: bigint, slot: number): Promise<T> {
  try {
    return await fn({ token, slot, get signal() { return scope.signal; } });
  } catch (error) {
    if (error instanceof LockLostError) scope.abort(error);
    throw error;
  }
}

/** Runs the body as a lock scope of its own (inside the slot lock's scope, which it joins). */
export function runPermitBody<T>(fn: (permit: SemaphorePermit) => Promise<T> | T, token: bigint, slot: number): Promise<T> {
  const scope = new LockScope();
  return runInLockScope(scope, () => permitBody(scope, fn, token, slot));
}

/** The token sequence is missing (`createFencingTable` was never run). */
export function missingTokenSequence(subject: AdvisorySubject, name: string, cause: unknown): LockConfigError {
  return new LockConfigError(
    `${subject.label}: the token sequence "${DEFAULT_FENCING_TABLE}_seq" does not exist; create it once with \`await createFencingTable(dataSource)\` (or in a migration)`,
    { key: name, method: subject.method, cause },
  );
}

/** A failed try: the missing token sequence as a LockConfigError, a lost connection as LockLostError, else the dialect's conversion. */
function explain(plan: SlotPlan, error: unknown): unknown {
  const { inst, subject, name } = plan;
  if (inst.dialect.fencing!.isMissingTable(error)) return missingTokenSequence(subject, name, error);
  if (inst.dialect.advisory.isConnectionLost(error)) return lockLostError(subject.label, `semaphore ${JSON.stringify(name)}`, { key: name, method: subject.method, cause: error });
  return inst.dialect.convertError(error, { key: name, method: subject.method }) ?? error;
}
