import { discarded, notPoolableReason } from '../../../context/connection-model';
import { driverConnectionClosed } from '../../lost-signal';
import { installationFor } from '../registry';

/**
 * Gives a driver connection ormlock pinned back to knex's pool — only when the connection model
 * says it is clean: outside a transaction, holding no lock ormlock took, alive. Otherwise the
 * connection is destroyed instead, and the event reported (warning ORMLOCK_CONNECTION_DISCARDED,
 * `lost` events for the locks it still held), as for TypeORM's QueryRunners.
 *
 * Knex's pool (tarn) has no call that removes one connection; what it has is the check knex runs
 * before handing a pooled connection out (its pool's `validate`): a connection marked
 * `__knex__disposed` fails it and is destroyed by the pool. So a connection that may not be pooled
 * is closed at once (`client.destroyRawConnection`, the server ends its transaction and frees its
 * locks), marked, and released: the pool frees its slot and never hands it out again. The probe
 * (`knexDisposalProblems`) checks each of these pieces on the live knex client.
 */
export async function giveBack(connection: object, client: KnexClient, raw: unknown, model: object): Promise<void> {
  const reason = notPoolableReason(model);
  if (!reason) return client.releaseConnection(raw);
  // a connection the server closed is destroyed as a matter of course (no warning); one still open is news
  const dead = driverConnectionClosed(raw);
  discarded(model, dead ? 'the connection died' : reason);
  const inst = installationFor(connection);
  if (!dead)
    process.emitWarning(`ormlock: a connection of ${inst?.label ?? 'a MikroORM instance'} was destroyed instead of going back to the pool: ${reason}`, {
      code: 'ORMLOCK_CONNECTION_DISCARDED',
    });
  if (raw !== null && typeof raw === 'object') (raw as { __knex__disposed?: string }).__knex__disposed = `ormlock: ${reason}`;
  await client.destroyRawConnection(raw).catch(() => undefined);
  return client.releaseConnection(raw);
}

export interface KnexClient {
  releaseConnection(raw: unknown): Promise<void>;
  destroyRawConnection(raw: unknown): Promise<void>;
}

/** What `giveBack` relies on in knex, on the live client: its problems (empty when it is as expected). */
export function knexDisposalProblems(client: any, label: string): string[] {
  const problems: string[] = [];
  for (const method of ['acquireConnection', 'releaseConnection', 'destroyRawConnection', 'getPoolSettings']) {
    if (typeof client?.[method] !== 'function') problems.push(`${label}.client.${method} is not a function`);
  }
  if (typeof client?.getPoolSettings === 'function' && !Function.prototype.toString.call(client.getPoolSettings).includes('__knex__disposed')) {
    problems.push(`${label}.client.getPoolSettings no longer checks __knex__disposed (the pool would hand out a connection ormlock destroyed)`);
  }
  return problems;
}
