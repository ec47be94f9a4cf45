/**
 * Installations: one per installed ORM instance (a TypeORM DataSource, a MikroORM instance),
 * each owning its settings and observers, and the one rule that decides which installation a
 * call uses. ORM-neutral: adapters register here; strategies resolve here.
 */
import { currentFrame, liveTxs } from '../context/store';
import { ambiguousInstallation, installUnderWay, loadedElsewhere, notAnEntityOfAny, notInstalled, plainObject } from '../faults/installations';
import { Installation } from './installation';

export { Installation, type InstallationSettings } from './installation';

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
    throw installUnderWay(label);
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
  if (entity !== null && typeof entity === 'object') {
    foreign.set(entity, label);
    anyForeign = true;
  }
}

/** Whether any entity was ever noted foreign (until then, nothing to forget on each load). */
let anyForeign = false;

/** Remembers that `entity` was loaded through / saved by `inst` (adapters call this). */
export function noteOrigin(entity: unknown, inst: Installation): void {
  if (entity !== null && typeof entity === 'object') {
    origins.set(entity, inst);
    if (anyForeign) foreign.delete(entity);
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
export function resolveInstallation(caller: string, request: ResolveRequest = NO_REQUEST): Installation {
  const { explicit, entity } = request;
  if ((explicit === undefined || explicit === null) && entity === undefined && request.entityClass === undefined) {
    // the common call (no option, no entity): the same rule without its intermediate arrays
    const quick = soleOrAmbient();
    if (quick) return quick;
  }
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
    if (elsewhere) throw loadedElsewhere(caller, cls, elsewhere);
  }
  if (entity !== undefined && (cls === Object || cls === undefined)) throw plainObject(caller, 'an installed DataSource');
  const knows = (inst: Installation) => !cls || inst.port.describe(cls) !== undefined;
  const ambient = liveTxs(currentFrame()).filter((tx) => knows(tx.inst));
  if (ambient.length) return ambient[ambient.length - 1].inst;
  const all = liveInstallations();
  const candidates = all.filter(knows);
  if (candidates.length === 1) return candidates[0];
  if (candidates.length === 0) {
    if (all.length && cls)
      throw notAnEntityOfAny(
        caller,
        cls,
        all.map((i) => i.label),
      );
    throw notInstalled(caller, undefined, cls);
  }
  throw ambiguousInstallation(
    caller,
    candidates.map((i) => i.label),
    cls,
  );
}

const NO_REQUEST: ResolveRequest = Object.freeze({});

/**
 * `resolveInstallation` for a call naming no installation, entity or class, where the answer needs
 * no list: the innermost live ambient transaction's installation, else the only installation when
 * it is live. Undefined otherwise (the full rule decides, and words the error).
 */
function soleOrAmbient(): Installation | undefined {
  const txs = currentFrame()?.txs;
  if (txs && txs.size) {
    let innermost: Installation | undefined;
    for (const tx of txs.values()) if (tx.scope.live) innermost = tx.inst;
    if (innermost) return innermost;
  }
  if (live.size !== 1) return undefined;
  const only: Installation = live.values().next().value!;
  return only.port.isLive ? only : undefined;
}

function describeTarget(x: unknown): string {
  const ctor = x !== null && typeof x === 'object' ? (x as object).constructor?.name : typeof x;
  const name = (x as { name?: unknown; options?: { name?: unknown } } | null)?.options?.name ?? (x as { name?: unknown } | null)?.name;
  return `${ctor ?? 'object'}${typeof name === 'string' ? ` '${name}'` : ''}`;
}
