/**
 * Process-wide settings that installLocking sets and every strategy reads.
 * Kept apart from the context (which is per async call) and from the registry
 * (which holds what decorators declared).
 */
import type { LockEvent } from './observe/events';

export type { LockEvent };

export interface Settings {
  /** Prefix of advisory and Redis keys, so that two applications on one database never collide. */
  namespace: string;
  /** Default `timeoutMs` of row locks when neither the call nor the entity policy gives one. */
  defaultLockTimeoutMs?: number;
  /** Default `timeoutMs` of advisory locks. */
  defaultAdvisoryTimeoutMs?: number;
  /** Called for lock events; errors it throws are ignored. */
  onLockEvent?: (event: LockEvent) => void;
}

export const settings: Settings = { namespace: '' };

export function emitLockEvent(event: LockEvent): void {
  const hook = settings.onLockEvent;
  if (!hook) return;
  try {
    hook(event);
  } catch {
    /* a logging hook must never break locking */
  }
}
