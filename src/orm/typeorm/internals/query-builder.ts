import { SelectQueryBuilder } from 'typeorm';
import { ambientTx, readLockPolicy } from '../../../context/store';
import type { LockConfigError } from '../../../errors';
import { badOptions } from '../../../faults/options';
import { lockedReadWithoutTransaction, readNotLocked } from '../../../faults/reads';
import { runLockedRead, unlockableRead } from '../../../locks/row-lock';

export { unlockableRead } from '../../../locks/row-lock';
import { resolveRowLockSpec, type RowLockOptions, type RowLockSpec } from '../../../locks/row-lock-options';
import { lockMetadataOf } from '../../../metadata/registry';
import { installationOf, noteForeignOrigin, type Installation } from '../../../installations';
import { dataSourceOf, describeDataSource } from '../compat';
import { expectMethod, replaceMethod, type InternalPatch } from './patch';

/** Marker on a query builder's expressionMap: "issue this read with this lock clause, through the dialect". */
const LOCK_SPEC = Symbol('ormlock.rowLockSpec');

/** Marks a read built by the port's lockedRead: the strategy bounds its wait and converts its errors. */
export function markLocked(qb: SelectQueryBuilder<any>, spec: RowLockSpec): void {
  (qb.expressionMap as any)[LOCK_SPEC] = spec;
}

const proto = SelectQueryBuilder.prototype as any;
const LABEL = 'SelectQueryBuilder.prototype';

/**
 * `createLockExpression` writes the dialect's clause for a marked builder. `expressionMap.clone()`
 * does not copy the marker, so count and pagination sub-queries built from a locked read are
 * never locked themselves.
 */
const lockExpression: InternalPatch = {
  name: `${LABEL}.createLockExpression`,
  probe: () => expectMethod(proto, LABEL, 'createLockExpression', ['lockMode']),
  apply() {
    return replaceMethod(
      proto,
      'createLockExpression',
      (base) =>
        function (this: SelectQueryBuilder<any>) {
          const spec: RowLockSpec | undefined = (this.expressionMap as any)[LOCK_SPEC];
          const inst = spec && installationOf(dataSourceOf(this));
          if (!spec || !inst) return base.call(this);
          const hasJoins = this.expressionMap.joinAttributes.length > 0;
          return inst.dialect.rowLockClause(spec, this.escape(this.expressionMap.mainAlias!.name), hasJoins);
        },
    );
  },
};

/**
 * `executeEntitiesAndRawResults` (the path of getOne/getMany/find*): inside a `@Pessimistic`
 * method, marks entity reads, bounds their wait and converts lock errors — and refuses a read
 * that would escape the method's transaction (a repository or manager bound to another
 * connection, a DataSource without ormlock), which would otherwise go unlocked.
 */
const entityReads: InternalPatch = {
  name: `${LABEL}.executeEntitiesAndRawResults`,
  probe: () => expectMethod(proto, LABEL, 'executeEntitiesAndRawResults', ['expressionMap']),
  apply() {
    return replaceMethod(
      proto,
      'executeEntitiesAndRawResults',
      (base) =>
        async function (this: SelectQueryBuilder<any>, queryRunner: any) {
          const plan = lockedReadPlan(this, queryRunner);
          if (!plan) return plainRead(this, () => base.call(this, queryRunner));
          return runPlan(this, queryRunner, plan, () => base.call(this, queryRunner));
        },
    );
  },
};

/**
 * `loadRawResults` (the path of getRawOne/getRawMany, and of TypeORM's own sub-reads): inside a
 * `@Pessimistic` method, a raw read of a covered entity gets the lock clause too. One whose rows
 * cannot be locked (an aggregate, GROUP BY, DISTINCT, HAVING: PostgreSQL refuses FOR UPDATE there,
 * and counting rows is no row lock) is refused by name.
 */
const rawReads: InternalPatch = {
  name: `${LABEL}.loadRawResults`,
  probe: () => expectMethod(proto, LABEL, 'loadRawResults', ['getQueryAndParameters']),
  apply() {
    return replaceMethod(
      proto,
      'loadRawResults',
      (base) =>
        async function (this: SelectQueryBuilder<any>, queryRunner: any) {
          const plan = countingTotal ? undefined : lockedReadPlan(this, queryRunner);
          if (!plan) return base.call(this, queryRunner);
          const aggregate = aggregateOf(this);
          if (aggregate) throw unlockableRead(plan.source, 'getRawOne()/getRawMany()', plan.entity, `it has ${aggregate}`);
          return runPlan(this, queryRunner, plan, () => base.call(this, queryRunner));
        },
    );
  },
};

/** True while `executeCountQuery` builds and starts its query: getManyAndCount's total is counted unlocked (its rows are locked). */
let countingTotal = false;

const totalCount: InternalPatch = {
  name: `${LABEL}.executeCountQuery`,
  probe: () => expectMethod(proto, LABEL, 'executeCountQuery', ['loadRawResults']),
  apply() {
    return replaceMethod(
      proto,
      'executeCountQuery',
      (base) =>
        function (this: SelectQueryBuilder<any>, queryRunner: unknown) {
          countingTotal = true;
          try {
            return base.call(this, queryRunner); // calls loadRawResults before its first await
          } finally {
            countingTotal = false;
          }
        },
    );
  },
};

/** getCount(), getExists() and stream() inside a `@Pessimistic` method: refused by name (see `unlockableRead`). */
const refusedReads: InternalPatch[] = (['getCount', 'getExists', 'stream'] as const).map((method) => ({
  name: `${LABEL}.${method}`,
  probe: () => expectMethod(proto, LABEL, method, ['obtainQueryRunner']),
  apply() {
    return replaceMethod(
      proto,
      method,
      (base) =>
        function (this: SelectQueryBuilder<any>, ...args: unknown[]) {
          const policy = coveringPolicy(this);
          if (policy) {
            const entity = this.expressionMap.mainAlias!.metadata.name;
            return Promise.reject(unlockableRead(policy.source, `${method}()`, entity, method === 'stream' ? STREAM_WHY : COUNT_WHY));
          }
          return base.apply(this, args);
        },
    );
  },
}));

const COUNT_WHY = 'a count or an existence test reads no row it could lock, and rows inserted meanwhile would not be counted';
const STREAM_WHY = 'a stream is read after the call returns, outside the lock scope';

/** What makes a raw read unlockable, or undefined. */
function aggregateOf(qb: SelectQueryBuilder<any>): string | undefined {
  const map = qb.expressionMap as any;
  if (map.groupBys?.length) return 'GROUP BY';
  if (map.havings?.length) return 'HAVING';
  if (map.selectDistinct) return 'DISTINCT';
  for (const s of map.selects ?? []) {
    const m =
      typeof s.selection === 'string' &&
      /\b(count|sum|avg|min|max|array_agg|string_agg|group_concat|json_agg|jsonb_agg|bool_and|bool_or|every)\s*\(/i.exec(s.selection);
    if (m) return `an aggregate (${m[1].toUpperCase()})`;
  }
  return undefined;
}

/** The `@Pessimistic` policy covering this builder's main entity (undefined when none applies). */
export function coveringPolicy(qb: SelectQueryBuilder<any>) {
  const map = qb.expressionMap as any;
  if (map[LOCK_SPEC] || !map.mainAlias?.hasMetadata || map.lockMode || map.subQuery) return undefined;
  return policyCovering(map.mainAlias.metadata);
}

/** The `@Pessimistic` policy covering reads of `metadata`'s entity (class or EntitySchema). */
export function policyCovering(metadata: { target: unknown }) {
  const policy = readLockPolicy();
  if (!policy) return undefined;
  const target = metadata.target;
  if (policy.entities && !(typeof target === 'function' && policy.entities.some((cls) => cls === target || target.prototype instanceof cls))) return undefined;
  return policy;
}

interface ReadPlan {
  inst: Installation;
  spec: RowLockSpec;
  entity: string;
  source: string;
}

/** How a read this builder is about to run must be locked, or undefined (a plain read); throws when it would escape. */
function lockedReadPlan(qb: SelectQueryBuilder<any>, queryRunner: any): ReadPlan | undefined {
  const policy = coveringPolicy(qb);
  if (!policy) return undefined;
  const map = qb.expressionMap as any;
  const ds = dataSourceOf(qb);
  const inst = installationOf(ds);
  const entity = map.mainAlias.metadata.name as string;
  const tx = inst && ambientTx(inst);
  if (!inst || !tx || tx.connection !== queryRunner) {
    throw escapedRead(policy.source, entity, inst, ds, Boolean(tx));
  }
  const spec = policySpec(inst, map.mainAlias.metadata.target, policy);
  inst.dialect.checkRowLock(spec, entity, map.joinAttributes.length > 0);
  if (!queryRunner.isTransactionActive) {
    throw lockedReadWithoutTransaction(entity);
  }
  return { inst, spec, entity, source: policy.source };
}

function runPlan<T>(qb: SelectQueryBuilder<any>, queryRunner: any, plan: ReadPlan, work: () => Promise<T>): Promise<T> {
  const map = qb.expressionMap as any;
  map[LOCK_SPEC] = plan.spec;
  const desc = (plan.inst.port as { descriptorOf?(m: unknown): any }).descriptorOf!(map.mainAlias.metadata);
  return runLockedRead(plan.inst, queryRunner, desc, plan.spec, 'row', work);
}

function plainRead<R>(qb: SelectQueryBuilder<any>, work: () => Promise<R>): Promise<R> {
  return installationOf(dataSourceOf(qb)) ? work() : work().then((r: any) => noteForeign(qb, r));
}

/** Entities read through a DataSource without ormlock are remembered as such: lock(entity) must not pick another database. */
function noteForeign<R extends { entities?: unknown[] }>(qb: SelectQueryBuilder<any>, result: R): R {
  if (Array.isArray(result?.entities) && result.entities.length) {
    const label = describeDataSource(dataSourceOf(qb));
    for (const entity of result.entities) noteForeignOrigin(entity, label);
  }
  return result;
}

function policySpec(inst: Installation, target: unknown, policy: { options: object; source: string }): RowLockSpec {
  const cls = typeof target === 'function' ? target : undefined;
  const declared = lockMetadataOf(cls)?.pessimistic;
  const installed = inst.settings.lockTimeoutMs;
  const { mode, onLocked, timeoutMs } = policy.options as RowLockOptions;
  // the same layers give the same spec: cached per entity class and call options
  const key = `${mode}|${onLocked}|${timeoutMs}`;
  const perClass = cls ? (policySpecs.get(cls) ?? policySpecs.set(cls, new Map()).get(cls)!) : undefined;
  const cached = perClass?.get(key);
  if (cached && cached.declared === declared && cached.installed === installed) return cached.spec;
  const { spec, problems } = resolveRowLockSpec({ timeoutMs: installed }, declared, policy.options);
  if (problems.length) throw badOptions(policy.source, problems, { method: policy.source });
  if (perClass && perClass.size < 64) perClass.set(key, { declared, installed, spec });
  return spec;
}

const policySpecs = new WeakMap<Function, Map<string, { declared: unknown; installed: number | undefined; spec: RowLockSpec }>>();

/** Specs (cached ones are shared) the dialect already accepted for a read without joins. */
const checkedSpecs = new WeakMap<RowLockSpec, object>();

/**
 * The spec of a read of `meta`'s entity by primary key (no joins) under `policy`, checked against
 * the dialect; undefined when the read must go TypeORM's way (which then refuses or locks it).
 */
export function planFor(inst: Installation, meta: { target: unknown }, policy: { options: object; source: string }): { spec: RowLockSpec } | undefined {
  try {
    const spec = policySpec(inst, meta.target, policy);
    if (checkedSpecs.get(spec) !== inst.dialect) {
      inst.dialect.checkRowLock(spec, String((meta as { name?: string }).name));
      checkedSpecs.set(spec, inst.dialect);
    }
    return { spec };
  } catch {
    return undefined; // the builder's path throws the same error, worded there
  }
}

function escapedRead(source: string, entity: string, inst: Installation | undefined, ds: unknown, hasTx: boolean): LockConfigError {
  const name = (ds as { options?: { name?: string } } | undefined)?.options?.name ?? 'default';
  const why = !inst
    ? `it went through DataSource '${name}', where ormlock is not installed (call installLocking on it, or read through the installed one)`
    : !hasTx
      ? `it went through ${inst.label}, where no ormlock transaction is open (pass { dataSource } to ${source.startsWith('@') ? 'the decorator' : 'the call'} naming this DataSource, or open one with transaction())`
      : `it ran on a connection outside the method's transaction (a manager or query runner of your own); use the repository, dataSource.manager or currentManager()`;
  return readNotLocked(source, entity, why);
}

export const queryBuilderPatches: readonly InternalPatch[] = [lockExpression, entityReads, rawReads, totalCount, ...refusedReads];
