import { SelectQueryBuilder } from 'typeorm';
import { currentFrame } from '../../context/store';
import { LockConfigError, TransactionRequiredError } from '../../errors';
import { resolveRowLockSpec, type RowLockSpec } from '../../locks/row-lock-options';
import { lockMetadataOf } from '../../metadata/registry';
import { emitLockEvent, settings } from '../../settings';
import { installationOf } from './installations';

/** Marker on a query builder's expressionMap: "issue this read with this lock, through the dialect". */
const LOCK_SPEC = Symbol('ormlock.rowLockSpec');
let patched = false;

export function markLocked(qb: SelectQueryBuilder<any>, spec: RowLockSpec): void {
  (qb.expressionMap as any)[LOCK_SPEC] = spec;
}

/**
 * Two hooks into SelectQueryBuilder, both inert unless ormlock asked for a lock:
 * - `createLockExpression` writes the dialect's clause for a marked builder;
 * - `executeEntitiesAndRawResults` (the path of getOne/getMany/find*) marks entity reads
 *   inside a `@Pessimistic` method, applies the wait limit and converts lock errors.
 * `expressionMap.clone()` does not copy the marker, so count and pagination sub-queries
 * built from a locked read are never locked themselves.
 */
export function patchSelectQueryBuilder(): void {
  if (patched) return;
  patched = true;
  const proto = SelectQueryBuilder.prototype as any;
  const baseLockExpression = proto.createLockExpression;
  const baseExecute = proto.executeEntitiesAndRawResults;

  proto.createLockExpression = function (this: SelectQueryBuilder<any>) {
    const spec: RowLockSpec | undefined = (this.expressionMap as any)[LOCK_SPEC];
    const inst = spec && installationOf(this.dataSource);
    if (!spec || !inst) return baseLockExpression.call(this);
    const hasJoins = this.expressionMap.joinAttributes.length > 0;
    return inst.dialect.rowLockClause(spec, this.escape(this.expressionMap.mainAlias!.name), hasJoins);
  };

  proto.executeEntitiesAndRawResults = async function (this: SelectQueryBuilder<any>, queryRunner: any) {
    const map = this.expressionMap as any;
    const inst = installationOf(this.dataSource);
    if (!inst || !map.mainAlias?.hasMetadata) return baseExecute.call(this, queryRunner);
    if (!map[LOCK_SPEC] && !map.lockMode && !map.subQuery) {
      const policySpec = specFromMethodPolicy(this, queryRunner);
      if (policySpec) map[LOCK_SPEC] = policySpec;
    }
    const spec: RowLockSpec | undefined = map[LOCK_SPEC];
    if (!spec) return baseExecute.call(this, queryRunner);

    const entity = map.mainAlias.metadata.name as string;
    inst.dialect.checkRowLock(spec, entity, map.joinAttributes.length > 0);
    if (!queryRunner.isTransactionActive) {
      throw new TransactionRequiredError(`A locked read of ${entity} needs a transaction: use transaction(), withLock() or @Transactional().`, { entity });
    }
    const startedAt = Date.now();
    try {
      const tx = currentFrame()?.txs.get(this.dataSource);
      const memo = tx && tx.queryRunner === queryRunner ? tx.memo : undefined;
      const result = await inst.dialect.withRowLockTimeout(queryRunner, spec.timeoutMs, () => baseExecute.call(this, queryRunner), memo);
      emitLockEvent({ type: 'acquired', kind: 'row', target: entity, waitedMs: Date.now() - startedAt });
      return result;
    } catch (error) {
      const converted = inst.dialect.convertError(error, { entity, onLocked: spec.onLocked, timeoutMs: spec.timeoutMs, startedAt });
      if (converted) {
        emitLockEvent({ type: converted.code === 'LOCK_TIMEOUT' ? 'timeout' : 'not_available', kind: 'row', target: entity, waitedMs: Date.now() - startedAt });
      }
      throw converted ?? error;
    }
  };
}

function specFromMethodPolicy(qb: SelectQueryBuilder<any>, queryRunner: unknown): RowLockSpec | undefined {
  const frame = currentFrame();
  const policy = frame?.readLock;
  if (!policy) return undefined;
  const tx = frame.txs.get(qb.dataSource);
  if (!tx || tx.queryRunner !== queryRunner) return undefined;
  const target = qb.expressionMap.mainAlias!.metadata.target;
  if (typeof target !== 'function') return undefined;
  if (policy.entities && !policy.entities.some((cls) => cls === target || target.prototype instanceof cls)) return undefined;
  const { spec, problems } = resolveRowLockSpec(
    { timeoutMs: settings.defaultLockTimeoutMs },
    lockMetadataOf(target)?.pessimistic,
    policy.options,
  );
  if (problems.length) throw new LockConfigError(`${policy.source}: ${problems.join('; ')}`, { method: policy.source });
  return spec;
}
