import type { PortConnection as QueryRunner } from '../orm/port';
import { ambientTx } from '../context/store';
import { writeOutsideTransaction } from '../faults/writes';
import type { Installation } from '../installations';
import { AdvisoryKeySet } from './advisory-key';
import type { AdvisoryLockOptions, AdvisorySubject } from './advisory-options';
import { makePlan } from './advisory-plan';
import { toAcquire } from './advisory-held';
import { acquired, acquireForTransaction, notObtained } from './advisory-acquire';

// entity writes (@AdvisoryLock on an entity class)

/** One entity-class declaration, as the advisory subscriber hands it over. */
export interface EntityAdvisoryRequest {
  readonly key: unknown;
  readonly options: AdvisoryLockOptions;
}

/**
 * Takes the entity's advisory locks on `qr` (the write's connection) in its open transaction,
 * held until that transaction ends. Keys of all declarations are taken together, in canonical
 * order. Keys this context already holds are not taken again.
 */
export async function lockForEntityWrite(
  inst: Installation,
  qr: QueryRunner,
  requests: readonly EntityAdvisoryRequest[],
  subject: AdvisorySubject,
): Promise<void> {
  if (!qr.isTransactionActive) {
    throw writeOutsideTransaction(
      subject.label,
      'the write',
      'its advisory lock',
      'use save()/remove() (which open one), wrap the write in transaction(…), or call .useTransaction(true) on the query builder',
      { entity: subject.entity },
    );
  }
  // Declarations with the same options are one plan, so all their keys are taken in one
  // canonical order; groups with different options are taken one after the other.
  const groups = new Map<string, { options: AdvisoryLockOptions; keys: unknown[] }>();
  for (const request of requests) {
    const group = `${request.options.shared === true}|${request.options.timeoutMs ?? ''}`;
    let entry = groups.get(group);
    if (!entry) groups.set(group, (entry = { options: request.options, keys: [] }));
    if (request.key instanceof AdvisoryKeySet) entry.keys.push(...request.key.keys);
    else entry.keys.push(request.key);
  }
  const tx = ambientTx(inst);
  const callerTx = tx?.connection === qr ? tx : undefined;
  for (const { options, keys } of groups.values()) {
    const plan = makePlan(inst, new AdvisoryKeySet(keys as any), { ...options, scope: 'transaction', onTimeout: 'throw' }, subject);
    const items = toAcquire(plan, qr);
    if (!items.length) continue;
    const startedAt = Date.now();
    // a caller's transaction stays usable if the lock times out (savepoint where needed)
    const failed = await acquireForTransaction(plan, qr, items, callerTx !== undefined);
    if (failed) throw await notObtained(plan, failed, startedAt, true);
    acquired(plan, items, startedAt);
  }
}
