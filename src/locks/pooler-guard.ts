import { sessionStateBehindPooler } from '../faults/advisory';
import type { Installation } from '../installations';

const DIRECT =
  'ormlock on a second DataSource/MikroORM instance that connects to the database directly (not through the pooler) and pass it as { dataSource }.';

/**
 * The one refusal of what needs session state behind a transaction-pooling pooler
 * (installLocking's `pooler: 'transaction'`, given or detected); nothing happens otherwise.
 * `what` names the feature, e.g. "session-scope advisory locks"; `scopeTransactionHelps: false`
 * drops the advice to use scope 'transaction' (where that is a session lock too).
 */
export function refuseUnderTransactionPooler(
  inst: Installation,
  subject: { label: string; method?: string; entity?: string },
  what: string,
  options: { scopeTransactionHelps?: boolean; extra?: Record<string, unknown> } = {},
): void {
  if (inst.settings.pooler !== 'transaction') return;
  const advice =
    options.scopeTransactionHelps === false
      ? `Install ${DIRECT}`
      : `Use scope: 'transaction' (held until the transaction commits or rolls back), or install ${DIRECT}`;
  throw sessionStateBehindPooler(subject.label, what, inst.label, inst.settings.poolerDetected, advice, {
    method: subject.method,
    entity: subject.entity,
    pooler: 'transaction',
    ...options.extra,
  });
}
