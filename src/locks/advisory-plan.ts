import type { AdvisoryDialect, LockDialect } from '../dialects/dialect';
import type { Installation } from '../installations';
import { resolveAdvisoryKeys, type ResolvedAdvisoryKey } from './advisory-key';
import {
  advisoryOptionProblems,
  checkAdvisoryOptionsFor,
  subjectDetails,
  type AdvisoryLockOptions,
  type AdvisoryScope,
  type AdvisorySubject,
  type OnAdvisoryTimeout,
} from './advisory-options';
import { refuseUnderTransactionPooler } from './pooler-guard';
import { badOptions } from '../faults/options';

/**
 * An advisory call's plan: the installation, the options in force and the distinct locks of its
 * key(s) in canonical order (src/locks/advisory.ts). Built once per call, read by every step.
 */

export interface LockItem {
  readonly id: string;
  readonly key: ResolvedAdvisoryKey;
  /** When this call took it (for heldMs). */
  at?: number;
}

export interface Plan {
  readonly inst: Installation;
  readonly dialect: LockDialect;
  readonly adv: AdvisoryDialect;
  readonly scope: AdvisoryScope;
  readonly shared: boolean;
  readonly timeoutMs?: number;
  readonly onTimeout: OnAdvisoryTimeout;
  /** Distinct locks in canonical order (sorted by the dialect's id). */
  readonly locks: readonly LockItem[];
  readonly subject: AdvisorySubject;
}

export function makePlan(inst: Installation, key: unknown, options: AdvisoryLockOptions, subject: AdvisorySubject, checked = false): Plan {
  const problems = checked ? [] : advisoryOptionProblems(options);
  if (problems.length) throw badOptions(subject.label, problems, subjectDetails(subject));
  checkAdvisoryOptionsFor(inst.dialect, options, subject);
  refuseSessionLocksUnderPooler(inst, options.scope ?? 'transaction', subject);
  const adv = inst.dialect.advisory;
  const resolvedKeys = resolveAdvisoryKeys(key, inst.settings.namespace, subject);
  let locks: LockItem[];
  if (resolvedKeys.length === 1) {
    locks = [{ id: adv.lockId(resolvedKeys[0]), key: resolvedKeys[0] }]; // one key: nothing to merge or order
  } else {
    const byId = new Map<string, LockItem>();
    for (const resolved of resolvedKeys) {
      const id = adv.lockId(resolved);
      if (!byId.has(id)) byId.set(id, { id, key: resolved });
    }
    locks = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  return {
    inst,
    dialect: inst.dialect,
    adv,
    scope: options.scope ?? 'transaction',
    shared: options.shared === true,
    timeoutMs: options.timeoutMs ?? inst.settings.advisoryTimeoutMs,
    onTimeout: options.onTimeout ?? 'throw',
    locks,
    subject,
  };
}

/**
 * Behind a transaction-pooling pooler a session lock has no owner: session scope is refused, and
 * so is transaction scope where the database has no transaction-scoped advisory locks (it is a
 * session lock released after COMMIT there; so the session refusal does not advise it there).
 */
export function refuseSessionLocksUnderPooler(inst: Installation, scope: AdvisoryScope, subject: AdvisorySubject): void {
  if (inst.settings.pooler !== 'transaction') return; // the only case refused (no message built per call)
  if (scope === 'session') {
    refuseUnderTransactionPooler(inst, subject, 'session-scope advisory locks', { scopeTransactionHelps: inst.dialect.capabilities.transactionAdvisoryLocks });
  } else if (!inst.dialect.capabilities.transactionAdvisoryLocks) {
    refuseUnderTransactionPooler(inst, subject, `advisory locks on ${inst.dialect.name} (session locks, released after COMMIT)`, {
      scopeTransactionHelps: false,
    });
  }
}

export function kindOf(plan: Plan): 'advisory' | 'tree' {
  return plan.subject.kind ?? 'advisory';
}

export function heldFor(item: LockItem): number | undefined {
  return item.at === undefined ? undefined : Date.now() - item.at;
}
