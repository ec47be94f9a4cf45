import * as mikroCore from '@mikro-orm/core';
import { childFrame, runInFrame } from '../../../context/store';
import { runWithAmbientConnection } from '../../../context/transaction';
import type { LockConfigError } from '../../../errors';
import { evaluateAdvisoryKey, lockForEntityWrite, type AdvisoryLockOptions } from '../../../locks/advisory';
import type { AroundCreateRunContext } from '../../../locks/parent';
import { lockMetadataOf } from '../../../metadata/registry';
import { staleCriteriaWrite } from '../../../faults/versioned';
import { advisoryKeyUnknown, writeOutsideTransaction, writtenWhereNotInstalled } from '../../../faults/writes';
import type { Installation } from '../../../installations';
import { connectionFor, type MikroOrmConnection } from '../connection';
import { installationFor } from '../registry';
import { expectMethod, ownerOf, replaceMethod, type MikroPatch } from './patch';
import { uncheckedVersionedRefusal, type UncheckedKind } from './versioned-writes';

/**
 * The writes that bypass a flush — `em.insert/insertMany/upsert/upsertMany/nativeUpdate/nativeDelete`
 * (and the same on a repository), and a query builder's `insert/update/delete/truncate` — for
 * entities that declare write-time locks, on the write's own transaction, before it is sent:
 *
 * - entity `@AdvisoryLock(entity => key)`: the keys of the rows written. An insert has them in its
 *   values; an upsert in its values over the row it updates (loaded by primary key); an update or delete by primary key loads the rows' current values in the
 *   same transaction (an update's new values over them), then takes the keys, then writes. A
 *   write by other criteria, whose rows are unknown before it runs, is refused by name.
 * - `@AroundCreate` hooks (`lockParent`): run on each inserted (or upserted) row's values; what a
 *   hook changes goes into the INSERT.
 *
 * Outside a transaction these writes are refused (TransactionRequiredError), as a flush is: what
 * they lock must be held until the write commits.
 */

type Kind = 'insert' | 'upsert' | 'update' | 'delete';
interface Declared {
  readonly advisory: boolean;
  readonly aroundCreate: boolean;
}

function declaredOn(meta: any, kind: Kind): Declared | undefined {
  const cls = meta?.class;
  const d = typeof cls === 'function' ? lockMetadataOf(cls) : undefined;
  if (!d) return undefined;
  const advisory = d.advisory.length > 0;
  const aroundCreate = (kind === 'insert' || kind === 'upsert') && d.aroundCreate.length > 0;
  return advisory || aroundCreate ? { advisory, aroundCreate } : undefined;
}

/** One write about to be sent: what it writes, and on which EntityManager and transaction. */
export interface NativeWrite {
  readonly call: string;
  readonly kind: Kind;
  readonly meta: any;
  readonly em: any;
  readonly ctx: object | undefined;
  /** insert / upsert: the rows' values (entities or plain objects, changed in place by hooks). */
  readonly values?: readonly object[];
  /** upsert: the fields it matches an existing row on (`onConflictFields`), when given. */
  readonly onConflictFields?: unknown;
  /** update / delete: the WHERE as given; update: the SET values. */
  readonly where?: unknown;
  readonly set?: object;
  /** Called after the @AroundCreate hooks ran on `values`. */
  readonly afterHooks?: () => void;
}

/** Takes what `write` must hold before it is sent (nothing when its entity declares no write-time lock). */
export async function beforeNativeWrite(write: NativeWrite): Promise<void> {
  const declared = declaredOn(write.meta, write.kind);
  if (!declared) return;
  const name: string = write.meta.className;
  const inst = installationFor(write.em);
  if (!inst) throw notInstalledWrite(name, write.call);
  if (!write.ctx) {
    throw writeOutsideTransaction(name, write.call, 'what ormlock locks for it', 'run it inside transaction(…) or em.transactional(…)', { entity: name });
  }
  const connection = connectionFor(write.em, write.ctx);
  await runWithAmbientConnection(inst, connection, async () => {
    if (declared.aroundCreate) await runHooks(inst, connection, write);
    if (declared.advisory) await takeKeys(inst, connection, write);
  });
}

async function runHooks(inst: Installation, connection: MikroOrmConnection, write: NativeWrite): Promise<void> {
  const name: string = write.meta.className;
  const hooks = lockMetadataOf(write.meta.class)!.aroundCreate;
  const ctx: AroundCreateRunContext = {
    manager: write.em,
    queryRunner: connection as any,
    installation: inst,
    descriptor: inst.entity(write.meta.class, `@AroundCreate on ${name}`),
  };
  for (const row of write.values ?? []) for (const hook of hooks) await hook(row, ctx);
  write.afterHooks?.();
}

async function takeKeys(inst: Installation, connection: MikroOrmConnection, write: NativeWrite): Promise<void> {
  const name: string = write.meta.className;
  const subject = { label: `@AdvisoryLock on ${name}`, entity: name };
  const rows = write.kind === 'upsert' ? await upsertedRows(write) : (write.values ?? (await currentRows(write)));
  const requests = rows.flatMap((row) =>
    lockMetadataOf(write.meta.class)!.advisory.map((decl) => ({
      key: evaluateAdvisoryKey(decl.key, undefined, [row], subject),
      options: decl.options as AdvisoryLockOptions,
    })),
  );
  if (requests.length) await lockForEntityWrite(inst, connection, requests, subject);
}

/**
 * The rows an upsert writes: its values, over the row it updates when that row exists, so that a
 * key column the values leave out comes from the row. The row is the one MikroORM's upsert matches:
 * by `onConflictFields` when given, else by the primary key the values carry, else by a unique
 * property or unique constraint the values fill (MikroORM's own `getWhereCondition`). A match on
 * values that are not plain (a reference, an embeddable) cannot be read back here: refused.
 */
async function upsertedRows(write: NativeWrite): Promise<object[]> {
  const meta = write.meta;
  const values = (write.values ?? []) as Array<Record<string, unknown>>;
  const matches = values.map((v) => upsertMatch(meta, v, write.onConflictFields));
  if (matches.some((m) => m !== undefined && !Object.values(m).every(isPlainValue))) {
    throw advisoryKeyUnknown(meta.className, write.call, 'it matches the row it updates on a value that is not a plain column value', INSTEAD);
  }
  const wheres = matches.filter((m): m is Record<string, unknown> => m !== undefined);
  if (wheres.length === 0) return values;
  const loaded: Array<Record<string, unknown>> = await runInFrame(childFrame({ readLock: undefined }), () =>
    write.em.getDriver().find(meta.className, { $or: wheres }, { ctx: write.ctx, connectionType: 'write' }),
  );
  return values.map((v, i) => {
    const match = matches[i];
    const row = match && loaded.find((r) => Object.entries(match).every(([k, x]) => String(r[k]) === String(x)));
    return row ? { ...row, ...Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) } : v;
  });
}

/** The WHERE MikroORM's upsert matches an existing row with for `values` (see upsertedRows), or undefined when it matches none. */
function upsertMatch(meta: any, values: Record<string, unknown>, onConflictFields: unknown): Record<string, unknown> | undefined {
  const pk: string[] = meta.primaryKeys;
  const byKey = pk.every((p) => values[p] !== undefined && values[p] !== null) ? Object.fromEntries(pk.map((p) => [p, values[p]])) : undefined;
  if (!Array.isArray(onConflictFields) && byKey) return byKey;
  const { where } = mikroCore.getWhereCondition(meta, onConflictFields as any, values, byKey as any) as { where?: unknown };
  if (where === null || typeof where !== 'object' || Object.keys(where).some((k) => !meta.properties[k])) return byKey;
  return where as Record<string, unknown>;
}

const isPlainValue = (x: unknown) => x === null || ['string', 'number', 'bigint', 'boolean'].includes(typeof x);

/** The rows an update or delete by primary key writes, as they are now (an update's new values over them). */
async function currentRows(write: NativeWrite): Promise<object[]> {
  const meta = write.meta;
  const keys = primaryKeysOf(meta, write.where);
  if (!keys) throw advisoryKeyUnknown(meta.className, write.call, whyUnknown(write), INSTEAD);
  if (keys.length === 0) return [];
  const pk: string[] = meta.primaryKeys;
  const where = pk.length === 1 ? { [pk[0]]: { $in: keys.map((k) => k[pk[0]]) } } : { $or: keys };
  // the key columns of the rows, read without a @Pessimistic method's row lock (the advisory lock comes first, as for a flush)
  const loaded: object[] = await runInFrame(childFrame({ readLock: undefined }), () =>
    write.em.getDriver().find(meta.className, where, { ctx: write.ctx, connectionType: 'write' }),
  );
  const set = write.set ? Object.fromEntries(Object.entries(write.set).filter(([, v]) => typeof v !== 'function')) : undefined;
  return loaded.map((row) => (set ? { ...row, ...set } : row));
}

const INSTEAD = 'em.persist()/em.remove() and flush on the loaded entity, or em.nativeUpdate()/nativeDelete() by primary key';

function whyUnknown(write: NativeWrite): string {
  if (write.kind === 'delete' && write.where === undefined) return `${write.call} writes every row`;
  return `its WHERE does not name the rows by primary key, so which rows it writes is known only once it runs`;
}

/**
 * The primary keys a WHERE names, as `{ pk: value }` objects: a bare key, an entity, `{ pk: v }`,
 * `{ pk: { $eq: v } }`, `{ pk: { $in: [...] } }` (single-column keys), other top-level conditions
 * AND-ed beside them (they only narrow the rows). null when the rows cannot be known this way.
 */
export function primaryKeysOf(meta: any, where: unknown): Array<Record<string, unknown>> | null {
  const pk: string[] = meta.primaryKeys ?? [];
  if (pk.length === 0) return null;
  const scalar = (v: unknown) => typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint';
  if (scalar(where)) return pk.length === 1 ? [{ [pk[0]]: where }] : null;
  if (where === null || typeof where !== 'object' || Array.isArray(where)) return null;
  const cond = where as Record<string, unknown>;
  const values = pk.map((p) => {
    const v = cond[p];
    if (scalar(v)) return [v];
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const ops = v as Record<string, unknown>;
      const only = Object.keys(ops);
      if (only.length === 1 && scalar(ops.$eq)) return [ops.$eq];
      if (only.length === 1 && Array.isArray(ops.$in) && ops.$in.every(scalar) && pk.length === 1) return ops.$in;
    }
    return null;
  });
  if (values.some((v) => v === null)) return null;
  if (pk.length === 1) return values[0]!.map((v) => ({ [pk[0]]: v }));
  return [Object.fromEntries(pk.map((p, i) => [p, values[i]![0]]))];
}

/**
 * The row and version a nativeUpdate/nativeDelete WHERE names (`{ id, version: 3 }`: the primary key
 * of one row and the version, each by `=`), or undefined. An update that sets the version itself is
 * not checked this way (MikroORM's builder moves the version only when the data leaves it out).
 */
function namedVersion(meta: any, where: unknown, data?: unknown): { id: Record<string, unknown>; expected: unknown } | undefined {
  const vp: string | undefined = meta.versionProperty;
  if (!vp || where === null || typeof where !== 'object' || Array.isArray(where)) return undefined;
  if (data && typeof data === 'object' && vp in data) return undefined;
  const keys = primaryKeysOf(meta, where);
  if (!keys || keys.length !== 1) return undefined;
  const raw = (where as Record<string, unknown>)[vp];
  const ops = raw !== null && typeof raw === 'object' && !(raw instanceof Date) ? (raw as Record<string, unknown>) : undefined;
  const expected = ops ? (Object.keys(ops).length === 1 ? ops.$eq : undefined) : raw;
  const usable = expected !== undefined && expected !== null && (typeof expected !== 'object' || expected instanceof Date);
  return usable ? { id: keys[0], expected } : undefined;
}

function notInstalledWrite(entity: string, call: string): LockConfigError {
  return writtenWhereNotInstalled(
    entity,
    'with ormlock locks',
    `${call} on a MikroORM instance`,
    '`await installLocking(orm)` (from ormlock/mikro-orm) after MikroORM.init()',
    { entity },
  );
}

const LABEL = 'EntityManager.prototype';

/** `EntityManager.prototype.insert / insertMany / upsert / upsertMany / nativeUpdate / nativeDelete`: see beforeNativeWrite. */
export function entityManagerWritesPatch(em: object): MikroPatch {
  const methods = ['insert', 'insertMany', 'upsert', 'upsertMany', 'nativeUpdate', 'nativeDelete'] as const;
  return {
    name: `${LABEL}.${methods.join(' / ')} (writes beside a flush)`,
    probe: () => [
      ...methods.flatMap((m) => expectMethod(ownerOf(em, m), LABEL, m, ['getContext'])),
      ...expectMethod(ownerOf(em, 'getTransactionContext'), LABEL, 'getTransactionContext'),
      ...expectMethod(ownerOf(em, 'getDriver'), LABEL, 'getDriver'),
      // the row an upsert updates is found by MikroORM's own rule
      ...(typeof (mikroCore as { getWhereCondition?: unknown }).getWhereCondition === 'function'
        ? []
        : ["@mikro-orm/core's getWhereCondition is not a function"]),
    ],
    apply() {
      const undo = methods.map((method) =>
        replaceMethod(
          ownerOf(em, method)!,
          method,
          (base) =>
            async function (this: any, ...args: any[]) {
              const kind = kindOf(method);
              const meta = kind === 'insert' ? undefined : metaOf(this, entityNameOf(method, args));
              const refusal = meta && uncheckedVersionedRefusal(meta, this, `em.${method}()`, kind as UncheckedKind);
              const named = refusal && (method === 'nativeUpdate' || method === 'nativeDelete') ? namedVersion(meta, args[1], args[2]) : undefined;
              if (refusal && !named) throw refusal; // @Versioned: nothing sent
              const write = describeCall(this, method, args);
              if (write) await beforeNativeWrite(write);
              const result = await base.apply(this, args);
              // by primary key and version: checked (the builder moves the version); 0 rows means the row moved on
              if (named && result === 0) throw staleCriteriaWrite(meta.className, named.id, named.expected, `em.${method}()`);
              return result;
            },
        ),
      );
      return () => undo.reverse().forEach((u) => u());
    },
  };
}

const isMany = (method: string) => method === 'insertMany' || method === 'upsertMany';
const isValueCall = (method: string) => method === 'insert' || method === 'upsert' || isMany(method);
const kindOf = (method: string): Kind =>
  method.startsWith('insert') ? 'insert' : method.startsWith('upsert') ? 'upsert' : method === 'nativeUpdate' ? 'update' : 'delete';

/** The entity a call of `method` with `args` writes: insert(entity) / insert(Entity, data); insertMany([entities]) / insertMany(Entity, [data]). */
function entityNameOf(method: string, args: any[]): unknown {
  const [first, second] = args;
  return isValueCall(method) && second === undefined ? (isMany(method) ? first?.[0]?.constructor : first?.constructor) : first;
}

/** What a call of `method` with `args` writes (undefined when its entity declares no write-time lock). */
function describeCall(self: any, method: string, args: any[]): NativeWrite | undefined {
  const [first, second, third] = args;
  const many = isMany(method);
  const valueCall = isValueCall(method);
  const meta = metaOf(self, entityNameOf(method, args));
  const kind = kindOf(method);
  if (!meta || !declaredOn(meta, kind)) return undefined;
  const em = self.getContext(false);
  const base = { call: `em.${method}()`, kind, meta, em, ctx: em.getTransactionContext() };
  if (valueCall) {
    const data = second === undefined ? first : second;
    return { ...base, values: many ? [...(data ?? [])] : [data], onConflictFields: third?.onConflictFields };
  }
  return method === 'nativeUpdate' ? { ...base, where: second, set: third } : { ...base, where: second };
}

function metaOf(self: any, entityName: unknown): any {
  if (!entityName) return undefined;
  const name = typeof entityName === 'function' ? entityName.name : typeof entityName === 'string' ? entityName : (entityName as any)?.constructor?.name;
  try {
    return self.getMetadata().find(name);
  } catch {
    return undefined;
  }
}

/**
 * A write of a query builder an EntityManager made (`em.createQueryBuilder(E).update(…).where(…)`,
 * `.insert(…)`, `.delete(…)`, `.truncate()`), from `QueryBuilder.prototype.execute`: see beforeNativeWrite.
 */
export function queryBuilderWrite(qb: any): NativeWrite | undefined {
  const type: string | undefined = qb.type;
  const meta = qb.mainAlias?.metadata;
  const kind: Kind | undefined =
    type === 'INSERT'
      ? qb._onConflict?.length
        ? 'upsert'
        : 'insert'
      : type === 'UPSERT'
        ? 'upsert'
        : type === 'UPDATE'
          ? 'update'
          : type === 'DELETE' || type === 'TRUNCATE'
            ? 'delete'
            : undefined;
  if (!kind || !qb.em || !declaredOn(meta, kind)) return undefined;
  const call = `qb.${type === 'TRUNCATE' ? 'truncate' : kind === 'upsert' ? 'insert' : kind}()`;
  const base = { call, kind, meta, em: qb.em, ctx: qb.context };
  if (kind === 'insert' || kind === 'upsert') {
    const rows: Array<Record<string, unknown>> = (Array.isArray(qb._data) ? qb._data : [qb._data]).filter(Boolean);
    const values = rows.map((row) => byProperty(meta, row));
    // what @AroundCreate hooks change on a row's properties goes back into the builder's (column-keyed) values
    const onConflictFields = kind === 'upsert' ? conflictProperties(meta, qb._onConflict) : undefined;
    return { ...base, values, onConflictFields, afterHooks: () => values.forEach((v, i) => writeBack(meta, v, rows[i])) };
  }
  if (type === 'TRUNCATE') return { ...base, where: undefined };
  const alias: string = qb.mainAlias.aliasName;
  return { ...base, where: byProperty(meta, qb._cond, alias), set: kind === 'update' && qb._data ? byProperty(meta, qb._data) : undefined };
}

/** A builder's column-keyed object (values, or a processed WHERE whose keys may carry `alias.`) keyed by property name. */
function byProperty(meta: any, row: unknown, alias?: string): any {
  if (!row || typeof row !== 'object' || Array.isArray(row)) return row;
  const names = new Map<string, string>();
  for (const p of Object.values(meta.properties ?? {}) as any[]) for (const f of p.fieldNames ?? []) if (p.fieldNames.length === 1) names.set(f, p.name);
  return Object.fromEntries(
    Object.entries(row).map(([k, v]) => {
      const bare = alias && k.startsWith(`${alias}.`) ? k.slice(alias.length + 1) : k;
      return [names.get(bare) ?? bare, v];
    }),
  );
}

/** Copies scalar changes of `values` (by property) back into the column-keyed `row`. */
function writeBack(meta: any, values: Record<string, unknown>, row: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(values)) {
    const prop = meta.properties?.[name];
    const field: string | undefined = prop?.fieldNames?.length === 1 ? prop.fieldNames[0] : undefined;
    if (field && (value === null || typeof value !== 'object') && row[field] !== value) row[field] = value;
  }
}

/** A query builder's `onConflict(fields)` (column names) as property names; undefined when it names none (or raw SQL). */
function conflictProperties(meta: any, onConflict: Array<{ fields?: unknown }> | undefined): string[] | undefined {
  const fields = onConflict?.[onConflict.length - 1]?.fields;
  if (!Array.isArray(fields) || fields.length === 0) return undefined;
  return fields.map((f: string) => (Object.values(meta.properties) as any[]).find((p) => p.fieldNames?.includes(f))?.name ?? f);
}
