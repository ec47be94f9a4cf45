/**
 * Installations: one per installed ORM instance (a TypeORM DataSource, a MikroORM instance),
 * each owning its settings and observers, and the one rule that decides which installation a
 * call uses. ORM-neutral: adapters register here; strategies resolve here.
 */
import { currentFrame, liveTxs } from '../context/store';
import type { LockDialect } from '../dialects/dialect';
import { LockConfigError } from '../errors';
import { emitTo, type LockEvent, type LockObserver } from '../observe/events';
import type { EntityDescriptor, OrmPort } from './port';
import type { PoolerMode } from './pooler';

/** What an installation was given (installLocking's options, checked). */
export interface InstallationSettings {
  /** Prefix of advisory keys, so that two applications on one database never collide. */
  readonly namespace: string;
  /** Default `timeoutMs` of row locks. */
  readonly lockTimeoutMs?: number;
  /** Default `timeoutMs` of advisory locks. */
  readonly advisoryTimeoutMs?: number;
  /** Longest wait for a second pool connection (requires_new, session locks), in ms. */
  readonly connectionTimeoutMs: number;
  /** What sits between the application and the database: 'transaction' refuses what needs session state. */
  readonly pooler: PoolerMode;
  /** True when installLocking saw a pooler (the server's handshake id is not the backend's). */
  readonly poolerDetected: boolean;
}

let nextId = 1;

export class Installation {
  readonly id = nextId++;
  constructor(
    readonly port: OrmPort,
    readonly dialect: LockDialect,
    readonly settings: InstallationSettings,
    readonly observers: readonly LockObserver[],
  ) {}

  get label(): string {
    return this.port.label;
  }

  /** Sends a lock event to this installation's observers (never throws). */
  emit(event: LockEvent): void {
    if (this.observers.length) emitTo(this.observers, { db: this.dialect.dbSystem as LockEvent['db'], ...event });
  }

  /** The descriptor of an entity object (its class's, or the one the adapter saw it loaded as); LockConfigError when unknown. */
  entityOf(object: object, caller: string): EntityDescriptor {
    const seen = this.port.describeObject?.(object);
    if (seen) return seen;
    if (object.constructor === Object || object.constructor === undefined) throw plainObject(caller, this.label);
    return this.entity(object.constructor, caller);
  }

  /** The entity class's descriptor; LockConfigError naming the entity and this ORM instance when unknown. */
  entity(target: Function, caller: string): EntityDescriptor {
    const desc = this.port.describe(target);
    if (!desc) {
      throw new LockConfigError(
        `${caller}: ${target?.name ?? 'this class'} is not an entity of ${this.label}; add it to its entities, or pass { dataSource } naming the one it belongs to.`,
        { entity: target?.name },
      );
    }
    return desc;
  }
}

/** Live installations in the order they were made. */
const live = new Map<object, Installation>();
/** Entity object → the installation it was loaded through or saved by. */
const origins = new WeakMap<object, Installation>();

export function addInstallation(inst: Installation): void {
  live.set(inst.port.target, inst);
}

export function removeInstallation(inst: Installation): void {
  if (live.get(inst.port.target) === inst) live.delete(inst.port.target);
}

/** ORM instances whose installLocking is under way (it awaits the database before it registers). */
const installing = new WeakSet<object>();

/**
 * Runs one installLocking on `target`; a second call while it is under way gets LockConfigError
 * (exactly one of two concurrent calls installs).
 */
export async function installOnce<T>(target: object, label: string, fn: () => Promise<T>): Promise<T> {
  if (installing.has(target)) {
    throw new LockConfigError(`installLocking: another installLocking call on ${label} is under way; install once per instance and share the handle it returns.`);
  }
  installing.add(target);
  try {
    return await fn();
  } finally {
    installing.delete(target);
  }
}

/** The installation made for exactly this ORM instance (DataSource / MikroORM). */
export function installationOf(target: unknown): Installation | undefined {
  return target !== null && typeof target === 'object' ? live.get(target) : undefined;
}

/** The installation that owns `x`: its DataSource/MikroORM, or one of its managers, connections, repositories. */
export function installationOwning(x: unknown): Installation | undefined {
  const direct = installationOf(x);
  if (direct) return direct;
  if (x === null || typeof x !== 'object') return undefined;
  for (const inst of live.values()) if (inst.port.owns(x)) return inst;
  return undefined;
}

/** Every live installation (those whose ORM instance was destroyed are dropped first). */
export function liveInstallations(): Installation[] {
  for (const inst of [...live.values()]) if (!inst.port.isLive) live.delete(inst.port.target);
  return [...live.values()];
}

/** Entity object → the ORM instance without ormlock it was loaded through (how people name it). */
const foreign = new WeakMap<object, string>();

/** Remembers that `entity` was loaded through an ORM instance where ormlock is not installed (adapters call this). */
export function noteForeignOrigin(entity: unknown, label: string): void {
  if (entity !== null && typeof entity === 'object') foreign.set(entity, label);
}

/** Remembers that `entity` was loaded through / saved by `inst` (adapters call this). */
export function noteOrigin(entity: unknown, inst: Installation): void {
  if (entity !== null && typeof entity === 'object') {
    origins.set(entity, inst);
    foreign.delete(entity);
  }
}

export interface ResolveRequest {
  /** The `{ dataSource }` option as the user gave it (DataSource, MikroORM, a manager …). */
  explicit?: unknown;
  /** The entity object the call is about. */
  entity?: object;
  /** The entity class the call is about (when there is no object). */
  entityClass?: Function;
}

/**
 * Which installation a call uses: the explicit option; for an entity object, the installation it
 * was loaded through or saved by (a row lives in one database); the ambient transaction (the
 * innermost open one, among those whose ORM knows the entity class); the only live installation
 * (that knows the entity class). Otherwise LockConfigError naming the candidates — never "the first".
 */
export function resolveInstallation(caller: string, request: ResolveRequest = {}): Installation {
  const { explicit, entity } = request;
  const cls = request.entityClass ?? (entity !== undefined ? (entity as object).constructor : undefined);
  if (explicit !== undefined && explicit !== null) {
    const inst = installationOwning(explicit);
    if (inst && inst.port.isLive) return inst;
    throw notInstalled(caller, describeTarget(explicit), cls);
  }
  if (entity !== undefined) {
    const origin = origins.get(entity);
    if (origin && origin.port.isLive && live.get(origin.port.target) === origin) return origin;
    const elsewhere = origin ? undefined : foreign.get(entity);
    if (elsewhere) {
      throw new LockConfigError(
        `${caller}: this ${cls?.name ?? 'entity'} was loaded through ${elsewhere}, where ormlock is not installed: its row is in that ` +
          'database, so no other installation can lock it. Call installLocking on that DataSource, or load the entity through an installed one.',
        { entity: cls?.name },
      );
    }
  }
  if (entity !== undefined && (cls === Object || cls === undefined)) throw plainObject(caller, 'an installed DataSource');
  const knows = (inst: Installation) => !cls || inst.port.describe(cls) !== undefined;
  const ambient = liveTxs(currentFrame()).filter((tx) => knows(tx.inst));
  if (ambient.length) return ambient[ambient.length - 1].inst;
  const all = liveInstallations();
  const candidates = all.filter(knows);
  if (candidates.length === 1) return candidates[0];
  if (candidates.length === 0) {
    if (all.length && cls) {
      throw new LockConfigError(
        `${caller}: ${cls.name} is not an entity of any installed ORM instance (installed: ${all.map((i) => i.label).join('; ')}).`,
        { entity: cls.name },
      );
    }
    throw notInstalled(caller, undefined, cls);
  }
  throw new LockConfigError(
    `${caller}: ormlock is installed on ${candidates.length} ORM instances (${candidates.map((i) => i.label).join('; ')}) and nothing ` +
      `in this call says which one to use: pass { dataSource } (the DataSource or MikroORM instance), or call it inside a transaction of that one.`,
    { entity: cls?.name, candidates: candidates.map((i) => i.label) },
  );
}

/** A plain object ormlock has not seen loaded or saved: which entity it is cannot be known. */
function plainObject(caller: string, where: string): LockConfigError {
  return new LockConfigError(
    `${caller}: this is a plain object, not an instance of an entity class, and it was not loaded or saved through ${where}: ` +
      'ormlock knows the entity of a plain object (an EntitySchema without `target`) only once TypeORM has loaded or saved it. ' +
      'Load it through a repository of the installed DataSource first (repository.findOneBy(…)), or give the EntitySchema a `target` class.',
  );
}

function describeTarget(x: unknown): string {
  const ctor = x !== null && typeof x === 'object' ? (x as object).constructor?.name : typeof x;
  const name = (x as { name?: unknown; options?: { name?: unknown } } | null)?.options?.name ?? (x as { name?: unknown } | null)?.name;
  return `${ctor ?? 'object'}${typeof name === 'string' ? ` '${name}'` : ''}`;
}

function notInstalled(caller: string, what: string | undefined, cls: Function | undefined): LockConfigError {
  return new LockConfigError(
    `${caller}: ormlock is not installed on ${what ?? 'any DataSource or MikroORM instance'}` +
      `${cls ? ` (entity ${cls.name})` : ''}: call \`await installLocking(dataSource)\` after \`dataSource.initialize()\` ` +
      '(or `installLocking(orm)` from ormlock/mikro-orm).',
    { entity: cls?.name },
  );
}
