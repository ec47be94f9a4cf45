import { lockLostError, runLockedBody, type LockedBody } from '../context/lock-scope';
import { ambientTx, childFrame, runInFrame } from '../context/store';
import { onNamedConnection, transaction, type TransactionOptions } from '../context/transaction';
import { LockConfigError } from '../errors';
import { resolveInstallation, type Installation } from '../orm/installations';
import { checkFunction, checkOptions } from '../arguments';
import { entityTarget, LOCK_CALL_OPTIONS, lockCallProblems, lockEntity, type LockCallOptions } from './row-lock';
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
  checkFunction('withLock(entity, fn, options?)', fn, 'fn');
  const problems = lockCallProblems(options, [...LOCK_CALL_OPTIONS, 'isolation']);
  if (problems.length) throw new LockConfigError(`withLock(): ${problems.join('; ')}`);
  const { isolation, ...lockOptions } = options;
  // the entity's own installation: it is where its row lives
  const { inst } = entityTarget(entity, 'withLock()', options.dataSource);
  return onNamedConnection(inst, options.dataSource, 'withLock()', () => transaction(async () => {
    const locked = await lockEntity(entity, { ...lockOptions, dataSource: inst.port.target });
    return runLockedBody(rowLockBody(inst, 'withLock()', entity), () => fn(locked));
  }, { isolation, dataSource: inst.port.target }));
}

/** The lock scope of a body holding `entity`'s row lock in the ambient transaction (its signal, its LockLostError). */
function rowLockBody(inst: Installation, label: string, entity: object): LockedBody {
  const desc = inst.entityOf(entity, label);
  const id = inst.port.idOf(desc, entity);
  const shown = Object.keys(id).length === 1 ? Object.values(id)[0] : id;
  return {
    inst,
    connection: ambientTx(inst)!.connection,
    lost: (cause) => lockLostError(label, `the row lock on ${desc.name} ${JSON.stringify(shown)}`, { entity: desc.name, id: shown, cause }),
  };
}

/** The options of `@Pessimistic()` on a method and of `withPessimistic()`. */
export const PESSIMISTIC_METHOD_OPTIONS = ['mode', 'onLocked', 'timeoutMs', 'entities', 'dataSource'];

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
  checkFunction(source, fn, 'fn', { method: source });
  checkOptions(source, options, PESSIMISTIC_METHOD_OPTIONS, { method: source });
  const { entities, dataSource, ...lockOptions } = options;
  const { problems } = resolveRowLockSpec(lockOptions);
  if (problems.length) throw new LockConfigError(`${source}: ${problems.join('; ')}`, { method: source });
  if (entities !== undefined && (!Array.isArray(entities) || entities.some((e) => typeof e !== 'function'))) {
    throw new LockConfigError(`${source}: entities must be an array of entity classes`, { method: source });
  }
  const inst = resolveInstallation(source, { explicit: dataSource });
  return onNamedConnection(inst, dataSource, source, () => transaction(async () => {
    const scope = { live: true };
    try {
      const body: LockedBody = { inst, connection: ambientTx(inst)!.connection, lost: (cause) => lockLostError(source, 'its row locks', { method: source, cause }) };
      return await runInFrame(childFrame({ readLock: { options: lockOptions, entities, source, inst, scope } }), () => runLockedBody(body, () => fn()));
    } finally {
      scope.live = false;
    }
  }, { dataSource: inst.port.target }));
}
