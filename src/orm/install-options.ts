import { optionsProblems } from '../arguments';
import { observerOptionProblems, type LockEvent, type LockObserver } from '../observe/events';
import type { InstallationSettings } from '../installations';
import { detectPooler, POOLER_MODES, resolvePoolerMode, type PoolerMode } from './pooler';
import type { OrmPort } from './port';
import type { LockDialect } from '../dialects/dialect';
import { badOption, badOptions } from '../faults/options';

/** The options of `installLocking`, the same for every ORM adapter. */
export interface InstallLockingOptions {
  /** Prefix of advisory-lock keys (e.g. your application's name); this installation's only. */
  namespace?: string;
  /** Default `timeoutMs` of row locks (undefined: wait as long as the database does). */
  lockTimeoutMs?: number;
  /** Default `timeoutMs` of advisory locks. */
  advisoryTimeoutMs?: number;
  /**
   * Longest wait for a second pool connection by a call that already holds one (`requires_new`,
   * session locks): past it, PoolExhaustedError instead of a wait that could last forever. Default 5000.
   */
  connectionTimeoutMs?: number;
  /** Observers of this installation's lock events. */
  observers?: readonly LockObserver[];
  /** Shorthand for one observer: called on lock events (acquired with waitedMs, released with heldMs, timeout, not available, lost). */
  onLockEvent?: (event: LockEvent) => void;
  /**
   * What sits between the application and the database. `'transaction'`: a transaction-pooling
   * pooler (PgBouncer `pool_mode = transaction`, RDS Proxy, Supavisor's transaction mode): what needs
   * session state (session-scope advisory locks) is refused with LockConfigError. `'session'`: a
   * session-pooling one. `'none'`: a direct connection. Undefined: detected at installLocking
   * (a pooler found is taken as `'transaction'`).
   */
  pooler?: PoolerMode;
}

export const DEFAULT_CONNECTION_TIMEOUT_MS = 5000;
const INSTALL_OPTIONS = ['namespace', 'lockTimeoutMs', 'advisoryTimeoutMs', 'connectionTimeoutMs', 'observers', 'onLockEvent', 'pooler'];

/** Checks installLocking's options (LockConfigError naming the option) and returns the installation's settings. */
export function checkInstallOptions(options: InstallLockingOptions, signature = 'installLocking(dataSource, options?)'): InstallationSettings {
  const shape = optionsProblems(options, INSTALL_OPTIONS);
  if (shape.length) throw badOptions(signature, shape);
  if (options.namespace !== undefined && typeof options.namespace !== 'string') {
    throw badOption('installLocking', 'namespace', 'a string', options.namespace);
  }
  for (const key of ['lockTimeoutMs', 'advisoryTimeoutMs', 'connectionTimeoutMs'] as const) {
    const v = options[key];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      throw badOption('installLocking', key, 'a number ≥ 0', v);
    }
  }
  if (options.pooler !== undefined && !POOLER_MODES.includes(options.pooler)) {
    throw badOption('installLocking', 'pooler', `one of ${POOLER_MODES.map((m) => `'${m}'`).join(', ')}`, options.pooler);
  }
  const problems = observerOptionProblems(options);
  if (problems.length) throw badOptions('installLocking', problems);
  return {
    namespace: options.namespace ?? '',
    lockTimeoutMs: options.lockTimeoutMs,
    advisoryTimeoutMs: options.advisoryTimeoutMs,
    connectionTimeoutMs: options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
    pooler: options.pooler ?? 'none',
    poolerDetected: false,
  };
}

/**
 * The settings with the pooler mode decided: the declared one, else what `detectPooler` found
 * (installLocking calls it once, with the installation's port, before anything is registered).
 */
export async function withPoolerMode(
  settings: InstallationSettings,
  declared: PoolerMode | undefined,
  port: OrmPort,
  dialect: LockDialect,
): Promise<InstallationSettings> {
  const evidence = declared === 'transaction' || declared === 'session' ? { detected: undefined } : await detectPooler(port, dialect);
  return { ...settings, pooler: resolvePoolerMode(declared, evidence, port.label), poolerDetected: evidence.detected === true };
}
