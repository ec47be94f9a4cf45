import { AsyncLocalStorage } from 'node:async_hooks';
import { LockMode } from '@mikro-orm/core';
import { ambientTx, readLockPolicy } from '../../../context/store';
import { LockConfigError } from '../../../errors';
import { runLockedRead, unlockableRead } from '../../../locks/row-lock';
import { resolveRowLockSpec, type RowLockSpec } from '../../../locks/row-lock-options';
import { lockMetadataOf } from '../../../metadata/registry';
import type { Installation } from '../../../installations';
import type { MikroOrmConnection } from '../connection';
import { knownConnection, rootStateOf } from '../connection';
import { installationFor } from '../registry';
import { expectMethod, ownerOf, replaceMethod, type MikroPatch } from './patch';
import { badOptions } from '../../../faults/options';
import { lockedReadWithoutTransaction, readNotLocked } from '../../../faults/reads';

/** Marker on a `lockTableAliases` array: "write this dialect's lock clause for this read". */
const LOCK_SPEC = Symbol('ormlock.rowLockSpec');

interface LockMark {
  readonly spec: RowLockSpec;
  readonly inst: Installation;
  readonly subject: string;
  /** The refusal the dialect's check threw while the SELECT was built (MikroORM's driver wraps it in a DriverException). */
  refusal?: unknown;
}

/** A `lockTableAliases` value carrying the spec: MikroORM hands it to its QueryBuilder untouched. */
export function markedAliases(inst: Installation, spec: RowLockSpec, subject: string): string[] {
  const aliases: string[] = [];
  (aliases as any)[LOCK_SPEC] = { spec, inst, subject } satisfies LockMark;
  return aliases;
}

export function isMarked(aliases: unknown): boolean {
  return Array.isArray(aliases) && (aliases as any)[LOCK_SPEC] !== undefined;
}

/**
 * `QueryBuilder.prototype.getKnexQuery`: a marked read gets the dialect's clause (timeouts through
 * the dialect, NOWAIT / SKIP LOCKED / `OF <main alias>` / MariaDB `WAIT n`) instead of MikroORM's lock
 * mode, appended to the finished SELECT.
 */
export function queryBuilderPatch(qb: object): MikroPatch {
  const owner = ownerOf(qb, 'getKnexQuery');
  const label = 'QueryBuilder.prototype';
  return {
    name: `${label}.getKnexQuery`,
    probe: () => [
      ...expectMethod(owner, label, 'getKnexQuery', ['lockMode', 'lockTables', '_query']),
      ...expectMethod(ownerOf(qb, 'setLockMode'), label, 'setLockMode', ['lockTables']),
    ],
    apply() {
      return replaceMethod(
        owner!,
        'getKnexQuery',
        (base) =>
          function (this: any, ...args: unknown[]) {
            const mark = markOf(this.lockTables);
            if (!mark || this._query?.qb) return base.apply(this, args);
            const mode = this.lockMode;
            this.lockMode = undefined;
            let qb: any;
            try {
              qb = base.apply(this, args);
            } finally {
              this.lockMode = mode;
            }
            this._query.qb = withLockClause(this, qb, mark);
            return this._query.qb;
          },
      );
    },
  };
}

/** `built` (a finished knex SELECT of the QueryBuilder `qb`) with the dialect's lock clause appended. */
export function withLockClause(qb: any, built: any, mark: LockMark): unknown {
  const hasJoins = Object.keys(qb._joins ?? {}).length > 0;
  try {
    mark.inst.dialect.checkRowLock(mark.spec, mark.subject, hasJoins);
  } catch (refusal) {
    mark.refusal = refusal;
    throw refusal;
  }
  const clause = mark.inst.dialect.rowLockClause(mark.spec, qb.platform.quoteIdentifier(qb.mainAlias.aliasName), hasJoins);
  const { sql, bindings } = built.toSQL();
  return qb.knex.raw(sql + clause, bindings);
}

/** The mark `markedAliases` put on an aliases array. */
export function markOf(aliases: unknown): LockMark | undefined {
  return Array.isArray(aliases) ? (aliases as any)[LOCK_SPEC] : undefined;
}

/**
 * `AbstractSqlDriver.prototype.find` (every entity read of an EntityManager: find, findOne,
 * findAll, populate, refresh …): inside a `@Pessimistic` method, the read is issued with the lock
 * clause on the method's transaction — and a read that would escape it (an EntityManager bound to
 * no transaction or to another one, an ORM without ormlock) is refused with LockConfigError.
 */
export function driverFindPatch(driver: object): MikroPatch {
  const owner = ownerOf(driver, 'find');
  const label = 'AbstractSqlDriver.prototype';
  return {
    name: `${label}.find`,
    probe: () => expectMethod(owner, label, 'find', ['lockMode', 'lockTableAliases', 'setLockMode']),
    apply() {
      return replaceMethod(
        owner!,
        'find',
        (base) =>
          function (this: any, entityName: string, where: unknown, options: any = {}) {
            const policy = readLockPolicy();
            if (!policy || options.lockMode || isMarked(options.lockTableAliases)) return base.call(this, entityName, where, options);
            const meta = this.metadata.find(entityName);
            if (!covers(policy, meta)) return base.call(this, entityName, where, options);
            const plan = planLockedRead(this, meta, options.ctx, policy);
            const locked = { ...options, lockMode: LockMode.PESSIMISTIC_WRITE, lockTableAliases: plan.aliases };
            // the driver converts what is thrown while it builds the SELECT: the refusal is rethrown as itself
            const read = () =>
              Promise.resolve(base.call(this, entityName, where, locked)).catch((error: unknown) => {
                throw markOf(plan.aliases)?.refusal ?? error;
              });
            return runLockedRead(plan.inst, plan.connection, plan.desc, plan.spec, 'row', read);
          },
      );
    },
  };
}

type Policy = NonNullable<ReturnType<typeof readLockPolicy>>;

/** True when `policy` covers reads of the entity `meta` describes (a class entity, not virtual nor embeddable). */
export function covers(policy: Policy, meta: any): boolean {
  const target = meta?.class;
  if (typeof target !== 'function' || meta.virtual || meta.embeddable) return false;
  return !policy.entities || policy.entities.some((cls) => cls === target || target.prototype instanceof cls);
}

export interface MikroReadPlan {
  readonly inst: Installation;
  readonly spec: RowLockSpec;
  readonly connection: MikroOrmConnection;
  readonly desc: NonNullable<ReturnType<Installation['port']['describe']>>;
  /** The `lockTableAliases` value that makes MikroORM's QueryBuilder write the dialect's clause. */
  readonly aliases: string[];
}

/**
 * How a read of `meta`'s entity inside `policy`'s method is locked, on the transaction `ctx` (the
 * knex transaction the read runs in). Throws LockConfigError when the read would escape the
 * method's transaction, TransactionRequiredError when that transaction is over.
 */
export function planLockedRead(owner: unknown, meta: any, ctx: object | undefined, policy: Policy): MikroReadPlan {
  const inst = installationFor(owner);
  const tx = inst && ambientTx(inst);
  const conn = tx?.connection as MikroOrmConnection | undefined;
  const sameRoot = ctx && conn && rootStateOf(ctx) !== undefined && rootStateOf(ctx) === conn.root;
  if (!inst || !tx || !sameRoot) throw escapedRead(policy.source, meta.className, inst, Boolean(tx));
  const { spec, problems } = resolveRowLockSpec({ timeoutMs: inst.settings.lockTimeoutMs }, lockMetadataOf(meta.class)?.pessimistic, policy.options);
  if (problems.length) throw badOptions(policy.source, problems, { method: policy.source });
  inst.dialect.checkRowLock(spec, meta.className);
  const connection = knownConnection(ctx!) ?? conn!;
  if (!connection.isTransactionActive) {
    throw lockedReadWithoutTransaction(meta.className);
  }
  return { inst, spec, connection, desc: inst.port.describe(meta.class)!, aliases: markedAliases(inst, spec, meta.className) };
}

function escapedRead(source: string, entity: string, inst: Installation | undefined, hasTx: boolean): LockConfigError {
  const why = !inst
    ? 'it went through a MikroORM instance where ormlock is not installed (call installLocking on it, or read through the installed one)'
    : !hasTx
      ? `it went through ${inst.label}, where no ormlock transaction is open (pass { dataSource: orm } to ${source.startsWith('@') ? 'the decorator' : 'the call'}, or open one with transaction())`
      : "it ran on an EntityManager outside the method's transaction (a fork of your own, or one bound to another transaction); use orm.em, currentManager() or an injected EntityManager/repository";
  return readNotLocked(source, entity, why);
}

/** Set while `em.findAndCount` / `qb.getResultAndCount` run: their total is counted unlocked (their rows are locked). */
export const countingTotal = new AsyncLocalStorage<boolean>();

/**
 * `AbstractSqlDriver.prototype.count` (em.count, repository.count): inside a `@Pessimistic` method
 * a count of a covered entity is refused by name — it reads no row it could lock, and rows
 * inserted meanwhile would not be counted. `em.findAndCount`'s total is not refused.
 */
export function driverCountPatch(driver: object): MikroPatch {
  const owner = ownerOf(driver, 'count');
  const label = 'AbstractSqlDriver.prototype';
  return {
    name: `${label}.count`,
    probe: () => expectMethod(owner, label, 'count'),
    apply() {
      return replaceMethod(
        owner!,
        'count',
        (base) =>
          function (this: any, entityName: string, ...rest: unknown[]) {
            const policy = readLockPolicy();
            if (policy && !countingTotal.getStore()) {
              const meta = this.metadata.find(entityName);
              if (covers(policy, meta)) {
                return Promise.reject(
                  unlockableRead(
                    policy.source,
                    'count()',
                    meta.className,
                    'a count reads no row it could lock, and rows inserted meanwhile would not be counted',
                  ),
                );
              }
            }
            return base.call(this, entityName, ...rest);
          },
      );
    },
  };
}

/** `EntityManager.prototype.findAndCount`: marks its count as the total of a locked read (see driverCountPatch). */
export function findAndCountPatch(em: object): MikroPatch {
  const owner = ownerOf(em, 'findAndCount');
  const label = 'EntityManager.prototype';
  return {
    name: `${label}.findAndCount`,
    probe: () => expectMethod(owner, label, 'findAndCount', ['count']),
    apply() {
      return replaceMethod(
        owner!,
        'findAndCount',
        (base) =>
          function (this: any, ...args: unknown[]) {
            return countingTotal.run(true, () => base.apply(this, args));
          },
      );
    },
  };
}
