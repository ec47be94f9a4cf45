import { LockConfigError } from '../errors';
import type { Installation } from '../orm/installations';

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
  throw new LockConfigError(
    `${subject.label}: ${what} cannot work behind a transaction-pooling connection pooler (${inst.label} is installed with ` +
      `pooler: 'transaction'${inst.settings.poolerDetected ? ', detected at installLocking' : ''}): the pooler hands each transaction ` +
      'to whichever server connection is free, so a lock held by a server session stays with a connection other clients then use, ' +
      `and its release may run on another one. ${advice}`,
    { method: subject.method, entity: subject.entity, pooler: 'transaction', ...options.extra },
  );
}
