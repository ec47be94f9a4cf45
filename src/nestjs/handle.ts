import type { LockDialect } from '../dialects/dialect';
import type { Installation } from '../installations';

/** What both adapters' installLocking return. */
export interface OrmlockHandle {
  readonly dialect: LockDialect;
  /** The installation: its settings and observers. */
  readonly installation: Installation;
  uninstall(): void | Promise<void>;
}
