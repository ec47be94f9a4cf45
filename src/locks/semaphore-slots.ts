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
import { ambientTx, childFrame, runInFrame } from '../context/store';
import { noteLock } from '../context/connection-model';
import { isConnectionLost, lockLostError } from '../context/lock-scope';
import { LockLostError, type LockConfigError } from '../errors';
import { missingTable } from '../faults/migrations';
import type { Installation } from '../installations';
import { DEFAULT_FENCING_TABLE } from '../redis/fencing';
import { refuseSessionLocksUnderPooler } from './advisory';
import { resolveAdvisoryKeys, type ResolvedAdvisoryKey } from './advisory-key';
import type { AdvisorySubject } from './advisory-options';
import type { SemaphorePermit } from './semaphore-options';
import { currentLockScope, LockScope, runInLockScope } from '../context/lock-signal';

/** What a semaphore's calls need to try its slots: made once per installation, name and permits. */
export interface SlotPlan {
  readonly inst: Installation;
  readonly name: string;
  /** The slots' keys and the database's ids of them, in slot order. */
  readonly keys: readonly ResolvedAdvisoryKey[];
  readonly ids: readonly string[];
  /** The key the statement's comment names (`semaphore:<name>`, for inspectors). */
  readonly display: ResolvedAdvisoryKey;
  /** The token expression (the sequence's next value). */
  readonly token: string;
  /** How the connection model notes a slot taken: until the transaction ends (native) or just after it (MySQL stand-ins). */
  readonly level: 'transaction' | 'until-end';
  readonly dropsAtRollbackTo: boolean;
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
  return plan ?? undefined;
}

function makePlan(inst: Installation, name: string, permits: number, subject: AdvisorySubject): SlotPlan | null {
  const adv = inst.dialect.advisory;
  const token = inst.dialect.fencing?.nextSequenceExpression?.(DEFAULT_FENCING_TABLE);
  if (!adv.lockFirstFree || token === undefined) return null;
  const namespace = inst.settings.namespace;
  const keys = Array.from({ length: permits }, (_, i) => resolveAdvisoryKeys([`semaphore:${name}`, i], namespace, subject)[0]);
  const [display] = resolveAdvisoryKeys(`semaphore:${name}`, namespace, subject);
  const level = inst.dialect.capabilities.transactionAdvisoryLocks ? 'transaction' : 'until-end';
  return {
    inst,
    name,
    keys,
    ids: keys.map((k) => adv.lockId(k)),
    display,
    token,
    level,
    dropsAtRollbackTo: inst.dialect.capabilities.rollbackToSavepointReleasesLocks,
  };
}

/** Whether this call may take the one-statement path: it opens the transaction itself, on a pool (or pinned) connection, not on a named one. */
export function slotPathApplies(inst: Installation, explicit: unknown, label: string): boolean {
  return ambientTx(inst) === undefined && namedConnection(inst, explicit, label) === undefined;
}

/**
 * In a transaction opened here: tries the slots (one statement per try; `wait()` between tries,
 * false when the caller's deadline passed) until one is taken, then runs `fn` holding it.
 *
 * The permit is a lock scope of its own inside the transaction's, which already watches the
 * connection: when the connection dies, the permit's signal aborts with an error naming the
 * semaphore and its slot, and the call rejects with that error; a loss of an enclosing scope
 * passes as it is. So a permit costs no second connection watch and no second promise chain.
 */
export function runOnFreeSlot<T>(
  plan: SlotPlan,
  subject: AdvisorySubject,
  fn: (permit: SemaphorePermit) => Promise<T> | T,
  wait: () => Promise<boolean>,
): Promise<{ got: boolean; result?: T }> {
  const { inst } = plan;
  refuseSessionLocksUnderPooler(inst, 'transaction', subject);
  const startedAt = Date.now();
  let permit: LockScope | undefined;
  const tryAll = async (): Promise<{ got: boolean; result?: T }> => {
    const qr = ambientTx(inst)!.connection;
    const n = plan.ids.length;
    for (;;) {
      const first = n === 1 ? 0 : Math.floor(Math.random() * n);
      let got: { index: number; token: string | null } | null;
      try {
        got = await inst.dialect.advisory.lockFirstFree!(qr, first === 0 ? plan.ids : rotated(plan.ids, first), plan.token, plan.display);
      } catch (error) {
        throw explain(plan, subject, error);
      }
      if (got) {
        const slot = (got.index + first) % n;
        const key = plan.keys[slot];
        noteLock(qr, { inst, kind: 'advisory', id: plan.ids[slot], display: key.display }, plan.level, plan.dropsAtRollbackTo);
        inst.emit({ type: 'acquired', kind: 'advisory', target: key.display, waitedMs: Date.now() - startedAt });
        const lost = (cause: unknown) =>
          lockLostError(subject.label, `semaphore ${JSON.stringify(plan.name)} slot ${slot}`, { key: plan.name, method: subject.method, cause });
        const scope = (permit = new LockScope());
        const dead = inst.port.lostSignal?.(qr);
        currentLockScope()?.onAbort((reason) => scope.abort(dead?.aborted ? lost(dead.reason) : reason));
        const token = BigInt(got.token ?? '0');
        const result = await runInFrame(childFrame({ lockScope: scope }), () =>
          permitBody(scope, fn, token, slot, (error) => (isConnectionLost(inst, error) ? lost(error) : error)),
        );
        return { got: true, result };
      }
      inst.emit({ type: 'not_available', kind: 'advisory', target: plan.display.display, waitedMs: Date.now() - startedAt });
      if (!(await wait())) return { got: false };
    }
  };
  // the transaction rejects with its own loss: the permit's names the semaphore (or is the body's own LockLostError)
  return transaction(tryAll, { dataSource: inst.port.target }).then(undefined, (error: unknown) => {
    throw permit?.aborted ? permit.reason : error;
  });
}

/** `ids` from index `first` on, then the ones before it. */
function rotated(ids: readonly string[], first: number): string[] {
  const out = new Array<string>(ids.length);
  for (let k = 0; k < ids.length; k++) out[k] = ids[(first + k) % ids.length];
  return out;
}

/**
 * Runs the body under `scope` (its signal made only when asked for): a LockLostError the body
 * throws aborts the scope; any other error goes through `convert` (default: as it is).
 */
function permitBody<T>(
  scope: LockScope,
  fn: (permit: SemaphorePermit) => Promise<T> | T,
  token: bigint,
  slot: number,
  convert: (error: unknown) => unknown = (error) => error,
): Promise<T> {
  const failed = (error: unknown): never => {
    if (error instanceof LockLostError) scope.abort(error);
    throw convert(error);
  };
  try {
    return Promise.resolve(fn(new Permit(token, slot, scope))).then(undefined, failed);
  } catch (error) {
    return failed(error);
  }
}

/**
 * What the body gets: a class (its signal a prototype getter, made only when read) rather than an
 * object literal with a getter, which V8 builds on a slow path on every call.
 */
class Permit implements SemaphorePermit {
  readonly #scope: LockScope;

  constructor(
    readonly token: bigint,
    readonly slot: number,
    scope: LockScope,
  ) {
    this.#scope = scope;
  }

  get signal(): AbortSignal {
    return this.#scope.signal;
  }
}

/** Runs the body as a lock scope of its own (inside the slot lock's scope, which it joins). */
export function runPermitBody<T>(fn: (permit: SemaphorePermit) => Promise<T> | T, token: bigint, slot: number): Promise<T> {
  const scope = new LockScope();
  return runInLockScope(scope, () => permitBody(scope, fn, token, slot));
}

/** The token sequence is missing (`createFencingTable` was never run). */
export function missingTokenSequence(subject: AdvisorySubject, name: string, cause: unknown): LockConfigError {
  return missingTable(
    subject.label,
    `the token sequence "${DEFAULT_FENCING_TABLE}_seq"`,
    'createFencingTable',
    DEFAULT_FENCING_TABLE,
    DEFAULT_FENCING_TABLE,
    cause,
    {
      key: name,
      method: subject.method,
    },
  );
}

/** A failed try: the missing token sequence as a LockConfigError, a lost connection as LockLostError, else the dialect's conversion. */
function explain(plan: SlotPlan, subject: AdvisorySubject, error: unknown): unknown {
  const { inst, name } = plan;
  if (inst.dialect.fencing!.isMissingTable(error)) return missingTokenSequence(subject, name, error);
  if (inst.dialect.advisory.isConnectionLost(error))
    return lockLostError(subject.label, `semaphore ${JSON.stringify(name)}`, { key: name, method: subject.method, cause: error });
  return inst.dialect.convertError(error, { key: name, method: subject.method }) ?? error;
}
