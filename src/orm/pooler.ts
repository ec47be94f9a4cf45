/**
 * What sits between the application and the database (installLocking's `pooler` option), and the
 * one check that can see a pooler from the client: the backend id the server announced when the
 * connection was opened (PostgreSQL's BackendKeyData pid, MySQL's handshake thread id) against the
 * id of the backend that runs a statement (`pg_backend_pid()`, `CONNECTION_ID()`). A direct
 * connection, or a plain TCP proxy (HAProxy), forwards the server's own handshake: the two are
 * equal. PgBouncer (any pool mode), Supavisor and RDS Proxy answer the handshake themselves with
 * an id of their own: the two differ. The pool mode itself cannot be seen from a client, so a
 * pooler found this way is taken to pool transactions unless the installation says `'session'`.
 * ORM-neutral: the adapters supply the handshake id (`OrmPort.handshakeBackendId`).
 */
import type { LockDialect } from '../dialects/dialect';
import { poolerNotNone } from '../faults/installations';
import type { PoolerMode } from '../installations/pooler-mode';
import type { OrmPort } from './port';

export type { PoolerMode } from '../installations/pooler-mode';
export const POOLER_MODES: readonly PoolerMode[] = ['transaction', 'session', 'none'];

/** What installLocking found out about the connection path. */
export interface PoolerEvidence {
  /** True: the handshake id differs from the backend's (a pooler answers the handshake); false: equal; undefined: cannot tell. */
  readonly detected: boolean | undefined;
  /** The two ids, for messages. */
  readonly handshakeId?: number;
  readonly backendId?: number;
}

/** One statement on one pool connection, at installation only. */
export async function detectPooler(port: OrmPort, dialect: LockDialect): Promise<PoolerEvidence> {
  if (!port.handshakeBackendId) return { detected: undefined };
  const own = await port.connect({});
  try {
    const handshakeId = port.handshakeBackendId(own.connection);
    if (handshakeId === undefined) return { detected: undefined };
    const [row] = await own.connection.query(dialect.connectionIdSql);
    const raw = row?.connectionId ?? row?.connectionid;
    const backendId = raw === undefined || raw === null ? undefined : Number(raw);
    if (backendId === undefined || !Number.isFinite(backendId)) return { detected: undefined };
    return { detected: backendId !== handshakeId, handshakeId, backendId };
  } finally {
    await own.release();
  }
}

/**
 * The installation's pooler mode: the one declared; when none is declared, `'transaction'` if a
 * pooler was detected, else `'none'`. Declaring `'none'` where a pooler answers is a
 * LockConfigError (say `'session'` or `'transaction'`).
 */
export function resolvePoolerMode(declared: PoolerMode | undefined, evidence: PoolerEvidence, label: string): PoolerMode {
  if (declared === 'none' && evidence.detected) {
    throw poolerNotNone(label, evidence.handshakeId, evidence.backendId);
  }
  return declared ?? (evidence.detected ? 'transaction' : 'none');
}

/**
 * The handshake backend id a driver connection holds: node-postgres' `processID` (from
 * BackendKeyData), mysql2's / mariadb's `threadId`. Undefined for drivers that do not keep it.
 */
export function handshakeIdOf(raw: unknown): number | undefined {
  const o = raw as { processID?: unknown; threadId?: unknown; connection?: { threadId?: unknown } } | null | undefined;
  if (typeof o?.processID === 'number') return o.processID;
  if (typeof o?.threadId === 'number') return o.threadId;
  if (typeof o?.connection?.threadId === 'number') return o.connection.threadId;
  return undefined;
}
