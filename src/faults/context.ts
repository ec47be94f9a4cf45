/**
 * The faults of the context (src/context/): transactions, propagation, commit hooks, `Current`,
 * a lost lock scope. One factory per fault, one wording; the caller throws what it returns.
 */
import { LockConfigError, LockLostError, TransactionNotAllowedError, TransactionRequiredError, type LockErrorDetails } from '../errors';

/** A commit hook (`afterCommit`, …) registered outside any transaction. */
export function hookOutsideTransaction(name: string): TransactionRequiredError {
  return new TransactionRequiredError(
    `${name}(fn) must be called inside a transaction (transaction(), @Transactional, or the ORM's own); outside one there is nothing to wait for.`,
  );
}

/** `propagation: 'mandatory'` with no transaction open. */
export function mandatoryWithoutTransaction(label: string): TransactionRequiredError {
  return new TransactionRequiredError(
    `transaction({ propagation: 'mandatory' }): no transaction is open on ${label}; call it inside transaction() or @Transactional.`,
  );
}

/** `propagation: 'never'` inside a transaction. */
export function neverInsideTransaction(label: string): TransactionNotAllowedError {
  return new TransactionNotAllowedError(
    `transaction({ propagation: 'never' }): called inside a transaction on ${label}; call it outside one, or use 'not_supported' to suspend it.`,
  );
}

/**
 * An isolation level asked for inside a running transaction of another level: a joined call
 * (fix: requires_new, or set it outside) or a savepoint (`nested`, which keeps its transaction's).
 */
export function isolationInside(caller: string, wanted: string, running: string, label: string, savepoint = false): LockConfigError {
  const fix = savepoint ? "a savepoint keeps its transaction's isolation" : "use propagation 'requires_new' or set the isolation on the outer transaction";
  return new LockConfigError(`${caller}: asked for isolation ${wanted} inside a ${running} transaction on ${label}; ${fix}.`, { isolation: wanted, running });
}

/** A QueryRunner given as `{ dataSource }` was already released. */
export function releasedQueryRunner(caller: string): LockConfigError {
  return new LockConfigError(
    `${caller}: the QueryRunner given as { dataSource } was already released; pass a connected QueryRunner (or its manager), or the DataSource itself.`,
  );
}

/** `Current.set` outside `Current.run`. */
export function currentOutsideRun(key: PropertyKey): LockConfigError {
  return new LockConfigError(
    `Current.set('${String(key)}') outside Current.run(): the value would be global and leak between requests. Wrap the request in Current.run({}, handler).`,
  );
}

/** The connection a lock scope held its lock on was lost. */
export function lockLostError(label: string, what: string, details?: LockErrorDetails): LockLostError {
  return new LockLostError(`${label}: the connection holding ${what} was lost; the lock was not held to the end`, details);
}
