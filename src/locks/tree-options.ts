import { describeValue, isPlainObject } from '../arguments';
import type { OnLocked } from './row-lock-options';

/**
 * Options of `@LockedTree()` / `lockedTree()`: the row-lock options that make sense for a lock
 * every tree write must take. Pure data and checks, no database.
 */
export interface LockedTreeOptions {
  /** Longest wait for the tree lock before `LockTimeoutError` (undefined: wait). `0` behaves like `nowait`. */
  timeoutMs?: number;
  /**
   * `wait` (default) or `nowait` (`LockNotAvailableError` at once when another write holds the
   * tree). `skip_locked` is refused: a write cannot be skipped.
   */
  onLocked?: Exclude<OnLocked, 'skip_locked'>;
}

/** What is wrong with `options` (empty when nothing is). */
export function lockedTreeOptionProblems(options: unknown): string[] {
  if (options === undefined) return [];
  if (!isPlainObject(options)) return [`options must be an object (got ${describeValue(options)})`];
  const problems: string[] = [];
  const o = options as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'timeoutMs' && k !== 'onLocked') problems.push(`unknown option '${k}' (known: timeoutMs, onLocked)`);
  }
  const t = o.timeoutMs;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 0)) problems.push(`timeoutMs must be a number ≥ 0 (got ${String(t)})`);
  const onLocked = o.onLocked;
  if (onLocked === 'skip_locked') {
    problems.push(`onLocked 'skip_locked' is not possible: a tree write cannot be skipped; use 'wait' (default) or 'nowait'`);
  } else if (onLocked !== undefined && onLocked !== 'wait' && onLocked !== 'nowait') {
    problems.push(`onLocked '${String(onLocked)}' is not one of wait, nowait`);
  }
  if (onLocked === 'nowait' && typeof t === 'number' && t > 0) problems.push(`timeoutMs applies only to onLocked 'wait' (got onLocked 'nowait')`);
  return problems;
}

/** The wait budget of the tree lock: undefined waits, 0 tries once. */
export function treeLockTimeoutMs(options: LockedTreeOptions | undefined): number | undefined {
  if (options?.onLocked === 'nowait') return 0;
  return options?.timeoutMs;
}

/**
 * The advisory key of a tree: one per table (`['ormlock:tree', 'public.pages']`). Namespaced
 * by installLocking's `namespace` like every advisory key.
 */
export function treeLockKey(tablePath: string): [string, string] {
  return ['ormlock:tree', tablePath];
}
