import { SelectQueryBuilder } from 'typeorm';
import { ambientTx, readLockPolicy } from '../../../context/store';
import { LockConfigError, TransactionRequiredError } from '../../../errors';
import { runLockedRead } from '../../../locks/row-lock';
import { resolveRowLockSpec, type RowLockSpec } from '../../../locks/row-lock-options';
import { lockMetadataOf } from '../../../metadata/registry';
import { installationOf, noteForeignOrigin, type Installation } from '../../installations';
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
    this.restore = replaceMethod(proto, 'createLockExpression', (base) =>
      function (this: SelectQueryBuilder<any>) {
        const spec: RowLockSpec | undefined = (this.expressionMap as any)[LOCK_SPEC];
        const inst = spec && installationOf(dataSourceOf(this));
        if (!spec || !inst) return base.call(this);
        const hasJoins = this.expressionMap.joinAttributes.length > 0;
        return inst.dialect.rowLockClause(spec, this.escape(this.expressionMap.mainAlias!.name), hasJoins);
      },
    );
  },
  restore() {},
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
    this.restore = replaceMethod(proto, 'executeEntitiesAndRawResults', (base) =>
      async function (this: SelectQueryBuilder<any>, queryRunner: any) {
        const map = this.expressionMap as any;
        const foreign = !installationOf(dataSourceOf(this));
        const plain = () => (foreign ? base.call(this, queryRunner).then((r: any) => noteForeign(this, r)) : base.call(this, queryRunner));
        if (map[LOCK_SPEC] || !map.mainAlias?.hasMetadata || map.lockMode || map.subQuery) return plain();
        const policy = readLockPolicy();
        if (!policy) return plain();
        const target = map.mainAlias.metadata.target;
        if (typeof target !== 'function') return plain();
        if (policy.entities && !policy.entities.some((cls) => cls === target || target.prototype instanceof cls)) return plain();
        const ds = dataSourceOf(this);
        const inst = installationOf(ds);
        const entity = map.mainAlias.metadata.name as string;
        const tx = inst && ambientTx(inst);
        if (!inst || !tx || tx.connection !== queryRunner) {
          throw escapedRead(policy.source, entity, inst, ds, Boolean(tx));
        }
        const spec = policySpec(inst, target, policy);
        inst.dialect.checkRowLock(spec, entity, map.joinAttributes.length > 0);
        if (!queryRunner.isTransactionActive) {
          throw new TransactionRequiredError(`A locked read of ${entity} needs a transaction: use transaction(), withLock() or @Transactional().`, { entity });
        }
        map[LOCK_SPEC] = spec;
        const desc = (inst.port as { descriptorOf?(m: unknown): any }).descriptorOf!(map.mainAlias.metadata);
        return runLockedRead(inst, queryRunner, desc, spec, 'row', () => base.call(this, queryRunner));
      },
    );
  },
  restore() {},
};

/** Entities read through a DataSource without ormlock are remembered as such: lock(entity) must not pick another database. */
function noteForeign<R extends { entities?: unknown[] }>(qb: SelectQueryBuilder<any>, result: R): R {
  if (Array.isArray(result?.entities) && result.entities.length) {
    const label = describeDataSource(dataSourceOf(qb));
    for (const entity of result.entities) noteForeignOrigin(entity, label);
  }
  return result;
}

function policySpec(inst: Installation, target: Function, policy: { options: object; source: string }): RowLockSpec {
  const { spec, problems } = resolveRowLockSpec({ timeoutMs: inst.settings.lockTimeoutMs }, lockMetadataOf(target)?.pessimistic, policy.options);
  if (problems.length) throw new LockConfigError(`${policy.source}: ${problems.join('; ')}`, { method: policy.source });
  return spec;
}

function escapedRead(source: string, entity: string, inst: Installation | undefined, ds: unknown, hasTx: boolean): LockConfigError {
  const name = (ds as { options?: { name?: string } } | undefined)?.options?.name ?? 'default';
  const why = !inst
    ? `it went through DataSource '${name}', where ormlock is not installed (call installLocking on it, or read through the installed one)`
    : !hasTx
      ? `it went through ${inst.label}, where no ormlock transaction is open (pass { dataSource } to ${source.startsWith('@') ? 'the decorator' : 'the call'} naming this DataSource, or open one with transaction())`
      : `it ran on a connection outside the method's transaction (a manager or query runner of your own); use the repository, dataSource.manager or currentManager()`;
  return new LockConfigError(`${source}: a read of ${entity} would not be locked: ${why}.`, { entity, method: source });
}

export const queryBuilderPatches: readonly InternalPatch[] = [lockExpression, entityReads];
