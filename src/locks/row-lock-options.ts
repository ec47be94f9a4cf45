/** Options of a row lock (`lock`, `withLock`, `@Pessimistic`). */
export type RowLockMode = 'write' | 'read' | 'no_key_update' | 'key_share';
export type OnLocked = 'wait' | 'nowait' | 'skip_locked';

export interface RowLockOptions {
  /** `write` (default): FOR UPDATE; `read`: FOR SHARE / LOCK IN SHARE MODE; PostgreSQL also `no_key_update`, `key_share`. */
  mode?: RowLockMode;
  /** What to do when another transaction holds the row: wait (default), fail at once, or skip it. */
  onLocked?: OnLocked;
  /** Longest wait for the row before `LockTimeoutError`. `0` behaves like `nowait`. */
  timeoutMs?: number;
}

/** A fully resolved row-lock request, as strategies hand it to a dialect. */
export interface RowLockSpec {
  mode: RowLockMode;
  onLocked: OnLocked;
  timeoutMs?: number;
}

const MODES: readonly RowLockMode[] = ['write', 'read', 'no_key_update', 'key_share'];
const ON_LOCKED: readonly OnLocked[] = ['wait', 'nowait', 'skip_locked'];

/**
 * Merges call options over the entity policy over the installed defaults (a later layer's
 * onLocked/timeoutMs replaces an earlier layer's value that cannot go with it) and checks
 * the values' shapes (not the database's capabilities: that is the dialect's job).
 * Returns a list of problems instead of throwing, so callers can name what is wrong.
 */
export function resolveRowLockSpec(...layers: Array<RowLockOptions | undefined>): { spec: RowLockSpec; problems: string[] } {
  const merged: RowLockOptions = {};
  for (const layer of layers) {
    if (!layer) continue;
    // a layer's onLocked or timeoutMs overrides the other's lower-layer value too, where the two
    // cannot go together: an installed lockTimeoutMs does not forbid a call's onLocked 'nowait'
    if (layer.onLocked !== undefined && layer.onLocked !== 'wait' && layer.timeoutMs === undefined) delete merged.timeoutMs;
    if (layer.timeoutMs !== undefined && layer.timeoutMs !== 0 && layer.onLocked === undefined && merged.onLocked !== undefined) delete merged.onLocked;
    for (const [k, v] of Object.entries(layer)) if (v !== undefined) (merged as Record<string, unknown>)[k] = v;
  }
  const problems: string[] = [];
  const mode = merged.mode ?? 'write';
  const onLocked = merged.onLocked ?? 'wait';
  if (!MODES.includes(mode)) problems.push(`mode '${String(mode)}' is not one of ${MODES.join(', ')}`);
  if (!ON_LOCKED.includes(onLocked)) problems.push(`onLocked '${String(onLocked)}' is not one of ${ON_LOCKED.join(', ')}`);
  const t = merged.timeoutMs;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 0)) {
    problems.push(`timeoutMs must be a number ≥ 0 (got ${String(t)})`);
  }
  if (t !== undefined && onLocked !== 'wait' && t > 0) {
    problems.push(`timeoutMs applies only to onLocked 'wait' (got onLocked '${onLocked}')`);
  }
  const spec: RowLockSpec = { mode, onLocked: t === 0 ? 'nowait' : onLocked };
  if (t !== undefined && t > 0) spec.timeoutMs = t;
  return { spec, problems };
}
