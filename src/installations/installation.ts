/**
 * One installation: an installed ORM instance (a TypeORM DataSource, a MikroORM instance) with
 * its settings and observers. Which installation a call uses is decided in ./installations.
 */
import type { LockDialect } from '../dialects/dialect';
import { notAnEntity, plainObject } from '../faults/installations';
import { emitTo, type LockEvent, type LockObserver } from '../observe/events';
import type { EntityDescriptor, OrmPort } from '../orm/port';
import type { PoolerMode } from './pooler-mode';

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
    if (!desc) throw notAnEntity(caller, target, this.label);
    return desc;
  }
}
