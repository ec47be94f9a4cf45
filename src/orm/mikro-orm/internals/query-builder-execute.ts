import { LockMode } from '@mikro-orm/core';
import { readLockPolicy } from '../../../context/store';
import { runLockedRead, unlockableRead } from '../../../locks/row-lock';
import { beforeNativeWrite, queryBuilderWrite } from './native-writes';
import { expectMethod, ownerOf, replaceMethod, type MikroPatch } from './patch';
import { uncheckedVersionedRefusal, type UncheckedKind } from './versioned-writes';
import { countingTotal, covers, isMarked, markOf, planLockedRead, withLockClause } from './reads';

const LABEL = 'QueryBuilder.prototype';
const COUNT_WHY = 'a count reads no row it could lock, and rows inserted meanwhile would not be counted';
const AGGREGATE = /\b(count|sum|avg|min|max|array_agg|string_agg|group_concat|json_agg|jsonb_agg|json_arrayagg|bool_and|bool_or|every)\s*\(/i;

/**
 * `QueryBuilder.prototype.execute` — where every statement of a query builder an EntityManager made
 * is sent. Its writes (insert/update/delete/truncate) first take what their entity's declarations
 * lock (native-writes.ts). Its reads
 * (`em.createQueryBuilder(E)` / `em.qb(E)`: getResult, getResultList, getSingleResult, execute,
 * getCount, awaiting the builder): inside a `@Pessimistic` method, a SELECT of a covered
 * entity gets the lock clause, on the method's transaction (a builder bound to no transaction or
 * to another one is refused, as an EntityManager read is); a count, an aggregate, GROUP BY, HAVING
 * or DISTINCT is refused by name. Builders MikroORM makes for itself (em.find, populate, …) have
 * no EntityManager and are left to the driver's patches.
 */
export function queryBuilderExecutePatch(qb: object): MikroPatch {
  const owner = ownerOf(qb, 'execute');
  return {
    name: `${LABEL}.execute`,
    probe: () => [...expectMethod(owner, LABEL, 'execute', ['this.type', 'this.context', 'toQuery', 'mainAlias']), ...qbShapeProblems(qb)],
    apply() {
      return replaceMethod(
        owner!,
        'execute',
        (base) =>
          function (this: any, ...args: unknown[]) {
            if (!this.em) return base.apply(this, args);
            const refusal = uncheckedBuilderWrite(this);
            if (refusal) return Promise.reject(refusal); // @Versioned: nothing sent
            const write = queryBuilderWrite(this);
            if (write) return beforeNativeWrite(write).then(() => base.apply(this, args));
            const policy = readLockPolicy();
            if (!policy || this.lockMode || isMarked(this.lockTables)) return base.apply(this, args);
            const type = this.type ?? 'SELECT';
            const meta = this.mainAlias?.metadata;
            if ((type !== 'SELECT' && type !== 'COUNT') || !covers(policy, meta)) return base.apply(this, args);
            if (type === 'COUNT') {
              if (countingTotal.getStore()) return base.apply(this, args);
              return Promise.reject(unlockableRead(policy.source, 'qb.getCount()', meta.className, COUNT_WHY));
            }
            const unlockable = aggregateOf(this);
            if (unlockable) return Promise.reject(unlockableRead(policy.source, 'qb.execute()/getResult()', meta.className, `it has ${unlockable}`));
            let plan;
            try {
              plan = planLockedRead(this.driver, meta, this.context, policy);
            } catch (error) {
              return Promise.reject(error);
            }
            this.lockMode = LockMode.PESSIMISTIC_WRITE;
            this.lockTables = plan.aliases;
            // already built (getQuery(), getParams() before running it): the clause goes on the built SELECT
            if (this._query?.qb) this._query = { qb: withLockClause(this, this._query.qb, markOf(plan.aliases)!) };
            return runLockedRead(plan.inst, plan.connection, plan.desc, plan.spec, 'row', () => base.apply(this, args));
          },
      );
    },
  };
}

/** `QueryBuilder.prototype.getResultAndCount`: its rows are locked, its total counted unlocked (as em.findAndCount's). */
export function resultAndCountPatch(qb: object): MikroPatch {
  const owner = ownerOf(qb, 'getResultAndCount');
  return {
    name: `${LABEL}.getResultAndCount`,
    probe: () => expectMethod(owner, LABEL, 'getResultAndCount', ['getResultList', 'getCount']),
    apply() {
      return replaceMethod(
        owner!,
        'getResultAndCount',
        (base) =>
          function (this: any, ...args: unknown[]) {
            return countingTotal.run(true, () => base.apply(this, args));
          },
      );
    },
  };
}

/** The refusal of a builder's write of a @Versioned entity that checks no version (versioned-writes.ts), or undefined. */
function uncheckedBuilderWrite(qb: any): Error | undefined {
  const type: string | undefined = qb.type;
  const upsert = (type === 'INSERT' && qb._onConflict?.some((c: { ignore?: boolean }) => !c.ignore)) || type === 'UPSERT';
  const kind: UncheckedKind | undefined = type === 'UPDATE' ? 'update' : type === 'DELETE' || type === 'TRUNCATE' ? 'delete' : upsert ? 'upsert' : undefined;
  if (!kind) return undefined;
  const call = type === 'TRUNCATE' ? 'qb.truncate()' : kind === 'upsert' ? 'qb.insert().onConflict().merge()' : `qb.${kind}()`;
  return uncheckedVersionedRefusal(qb.mainAlias?.metadata, qb.em, call, kind);
}

/** The builder's fields the patch reads, as a fresh builder has them. */
function qbShapeProblems(qb: any): string[] {
  const missing = [
    'mainAlias',
    'flags',
    '_joins',
    '_cond',
    '_data',
    '_onConflict',
    '_fields',
    '_groupBy',
    '_having',
    'platform',
    'knex',
    'driver',
    'em',
    'context',
  ].filter((f) => !(f in qb));
  return missing.length ? [`a QueryBuilder has no ${missing.join(', ')}`] : [];
}

/** What makes a SELECT unlockable (FOR UPDATE is refused with it, or counts no row), or undefined. */
function aggregateOf(qb: any): string | undefined {
  if (qb._groupBy?.length) return 'GROUP BY';
  if (qb._having && Object.keys(qb._having).length) return 'HAVING';
  if (qb.flags?.has?.('DISTINCT') || qb._distinctOn?.length) return 'DISTINCT';
  for (const field of qb._fields ?? []) {
    const text = typeof field === 'string' ? field : typeof field?.sql === 'string' ? field.sql : '';
    const m = AGGREGATE.exec(text);
    if (m) return `an aggregate (${m[1].toUpperCase()})`;
  }
  return undefined;
}
