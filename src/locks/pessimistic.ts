import { childFrame, runInFrame } from '../context/store';
import { transaction, type TransactionOptions } from '../context/transaction';
import { LockConfigError } from '../errors';
import { resolveInstallation } from '../orm/installations';
import { entityTarget, lockCallProblems, lockEntity, type LockCallOptions } from './row-lock';
import { resolveRowLockSpec, type RowLockOptions } from './row-lock-options';

export type { RowLockOptions, RowLockMode, OnLocked } from './row-lock-options';

/**
 * Rails' `lock!`. Inside a transaction: re-reads `entity`'s row with the lock clause and
 * refreshes its fields in place; returns the same object. Outside one: TransactionRequiredError.
 *
 * ```ts
 * await transaction(async () => {
 *   await lock(user);            // SELECT … FOR UPDATE
 *   user.credits -= order.price;
 *   await dataSource.manager.save(user);
 * });
 * ```
 */
export function lock<T extends object>(entity: T, options?: LockCallOptions): Promise<T> {
  return lockEntity(entity, options);
}

/**
 * Rails' `with_lock`: joins or opens a transaction, locks and reloads `entity`, runs `fn`
 * with it, commits.
 *
 * ```ts
 * await withLock(user, async (u) => { u.credits -= 10; await repo.save(u); });
 * ```
 */
export async function withLock<T extends object, R>(
  entity: T,
  fn: (locked: T) => Promise<R> | R,
  options: LockCallOptions & Pick<TransactionOptions, 'isolation'> = {},
): Promise<R> {
  if (typeof fn !== 'function') throw new LockConfigError(`withLock(entity, fn, options?): fn must be a function (got ${fn === null ? 'null' : typeof fn})`);
  const problems = lockCallProblems(options);
  if (problems.length) throw new LockConfigError(`withLock(): ${problems.join('; ')}`);
  const { isolation, ...lockOptions } = options;
  // the entity's own installation: it is where its row lives
  const { inst } = entityTarget(entity, 'withLock()', options.dataSource);
  return transaction(async () => fn(await lockEntity(entity, { ...lockOptions, dataSource: inst.port.target })), { isolation, dataSource: inst.port.target });
}

export interface PessimisticMethodOptions extends RowLockOptions {
  /** Lock only reads of these entity classes (default: every entity read). */
  entities?: Function[];
  /** DataSource (or MikroORM instance), when several are installed. */
  dataSource?: unknown;
}

/**
 * The plain-function twin of `@Pessimistic()` on a method: runs `fn` in a transaction in
 * which every entity read through TypeORM is issued with the lock clause.
 *
 * ```ts
 * await withPessimistic(async () => {
 *   const user = await users.findOneByOrFail({ id });   // … FOR UPDATE
 * }, { onLocked: 'nowait' });
 * ```
 */
export async function withPessimistic<R>(fn: () => Promise<R> | R, options: PessimisticMethodOptions = {}, source = 'withPessimistic()'): Promise<R> {
  if (typeof fn !== 'function') throw new LockConfigError(`${source}: expected a function to run`, { method: source });
  if (options === null || typeof options !== 'object') throw new LockConfigError(`${source}: options must be an object`, { method: source });
  const { entities, dataSource, ...lockOptions } = options;
  const { problems } = resolveRowLockSpec(lockOptions);
  if (problems.length) throw new LockConfigError(`${source}: ${problems.join('; ')}`, { method: source });
  if (entities !== undefined && (!Array.isArray(entities) || entities.some((e) => typeof e !== 'function'))) {
    throw new LockConfigError(`${source}: entities must be an array of entity classes`, { method: source });
  }
  const inst = resolveInstallation(source, { explicit: dataSource });
  return transaction(async () => {
    const scope = { live: true };
    try {
      return await runInFrame(childFrame({ readLock: { options: lockOptions, entities, source, inst, scope } }), fn);
    } finally {
      scope.live = false;
    }
  }, { dataSource: inst.port.target });
}
