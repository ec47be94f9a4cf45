import type { PortConnection } from '../orm/port-connection';
import type { RowLockSpec } from '../locks/row-lock-options';
import type { LockError } from '../errors';
import type { ResolvedAdvisoryKey } from '../locks/advisory-key';
import type { LockInspector } from './inspect';
import type { RunQuery } from './run-query';

export type { RunQuery } from './run-query';

/** Where the database server is, for a diagnostic client outside the pool. */
export interface ServerAddress {
  /** The wire protocol: which client library talks to it. */
  family?: 'postgres' | 'mysql';
  url?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
}

/** What a database can do; strategies ask these flags, never the database's name. */
export interface DialectCapabilities {
  /** Row lock modes the SELECT lock clause can express. */
  rowLockModes: ReadonlySet<RowLockSpec['mode']>;
  nowait: boolean;
  skipLocked: boolean;
  /** `FOR UPDATE OF alias`: a read with joins can lock only its main table. */
  lockOf: boolean;
  /** A wait limit written into the lock clause itself (MariaDB `WAIT n`), so no extra statement. */
  lockWaitClause: boolean;
  /** Advisory locks released at transaction end (pg_advisory_xact_lock). */
  transactionAdvisoryLocks: boolean;
  /** Shared advisory locks. */
  sharedAdvisoryLocks: boolean;
  /**
   * Sequences whose values are never rolled back and hold no lock until commit (PostgreSQL,
   * MariaDB): the fencing tokens of database semaphores, drawn inside the caller's transaction.
   */
  tokenSequences: boolean;
  /**
   * ROLLBACK TO SAVEPOINT releases the transaction-scoped advisory locks taken after the savepoint
   * (PostgreSQL). Session locks (GET_LOCK, pg_advisory_lock) are never touched by a rollback.
   */
  rollbackToSavepointReleasesLocks: boolean;
  /** ROLLBACK TO SAVEPOINT releases the row locks taken after the savepoint (PostgreSQL, MariaDB; MySQL's InnoDB keeps them). */
  rollbackToSavepointReleasesRowLocks: boolean;
  /**
   * BEGIN and the statement after it can travel in one round trip (`beginWithStatement`): as one
   * multi-statement query without parameters on PostgreSQL (its simple query protocol, the
   * statement's values written in as quoted literals), as one compound statement
   * (`BEGIN NOT ATOMIC … END`) around a SELECT on MariaDB, or written just ahead of a locking
   * SELECT without waiting for BEGIN's answer (MariaDB, pipelined). A transaction ormlock opens then
   * sends its BEGIN with its first statement (often its lock).
   */
  beginRidesWithStatement: boolean;
  /** The isolation a transaction gets when nobody names one (the server's default). */
  defaultIsolation: 'READ UNCOMMITTED' | 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE';
}

/** A transaction's BEGIN and its first statement as one query (`LockDialect.beginWithStatement`). */
export interface BeginWithStatement {
  /** The query's text. */
  sql: string;
  /** Its parameters, as the driver takes them (none where the values are written into `sql`). */
  parameters?: readonly unknown[];
  /**
   * Which of the driver's results is the statement's: the last (PostgreSQL: BEGIN's result comes
   * first) or the first (MariaDB: the compound statement's own status follows its SELECT's rows).
   * `'pipelined'`: `sql` is `<begin>; <statement>` as the logger sees it, but the driver
   * connection is handed the statement alone, with the opening statements written to the socket
   * just ahead of it, each answered on its own (MariaDB, mysql2: a SELECT with a row lock). Only
   * for a statement that leaves nothing behind if an opening statement failed: the caller then
   * gets that failure, and rolls back.
   */
  result: 'first' | 'last' | 'pipelined';
}

/**
 * A locking SELECT that bounds its own wait: `wrap(sql, n)` takes a SELECT with `n` positional
 * parameters and returns one statement with one more (`value(timeoutMs)`, last) that sets the
 * limit, runs the SELECT and restores the limit in force before it. Its rows are the SELECT's
 * columns (plus ormlock's own, to be ignored); when the SELECT finds no row, one row whose
 * columns are all NULL.
 */
export interface BoundedRowLock {
  wrap(sql: string, parameterCount: number): string;
  value(timeoutMs: number): unknown;
}

/** Context an error converter may use to choose the right LockError subclass and fill it in. */
export interface ErrorContext {
  entity?: string;
  id?: unknown;
  key?: unknown;
  method?: string;
  onLocked?: RowLockSpec['onLocked'];
  timeoutMs?: number;
  startedAt?: number;
  /** The statement was waiting for a lock (a cancel of it means the lock was not obtained). */
  lockWait?: boolean;
}

/**
 * Everything database-specific that ormlock does goes through one of these.
 * One implementation per database family (src/dialects/postgres, src/dialects/mysql).
 */
export interface LockDialect {
  readonly name: string;
  /** OpenTelemetry's `db.system.name` of this database: 'postgresql', 'mysql', 'mariadb'. */
  readonly dbSystem: string;
  readonly capabilities: DialectCapabilities;

  /** Throws LockConfigError (naming `subject`) if this database cannot honour the spec. */
  checkRowLock(spec: RowLockSpec, subject: string, hasJoins?: boolean): void;
  /** The clause appended to a SELECT: ` FOR UPDATE OF "u" NOWAIT`. `mainAlias` is already escaped. */
  rowLockClause(spec: RowLockSpec, mainAlias: string, hasJoins: boolean): string;
  /**
   * Runs `work` (the locking SELECT) so that it waits at most `timeoutMs` for row locks, with
   * as few extra statements as the database allows. The limit lasts for this call only: a later
   * statement on the connection is not limited by it. `memo` is no longer used (kept for adapters
   * that pass it).
   */
  withRowLockTimeout<T>(queryRunner: PortConnection, timeoutMs: number | undefined, work: () => Promise<T>, memo?: Map<string, unknown>): Promise<T>;
  /**
   * Where the wait limit can ride in the locking SELECT itself, set before its row lock and put
   * back after it (PostgreSQL's `set_config` in the same statement): the wrapping. Absent where
   * the lock clause carries the limit (`capabilities.lockWaitClause`) or nothing can.
   */
  readonly boundedRowLock?: BoundedRowLock;
  /**
   * Where `capabilities.beginRidesWithStatement`: the query that sends `begin` (BEGIN and what
   * goes with it, statements joined by `; `) and `sql` with its `parameters` in one round trip,
   * or undefined when the statement or one of its values cannot be sent so (the caller then
   * sends BEGIN on its own first).
   */
  readonly beginWithStatement?: (begin: string, sql: string, parameters: readonly unknown[]) => BeginWithStatement | undefined;
  /** Converts a driver error into a LockError, or returns undefined if it is not one of ours. */
  convertError(error: unknown, ctx?: ErrorContext): LockError | undefined;
  /** True for a unique-constraint violation (PG 23505, MySQL 1062). */
  isUniqueViolation(error: unknown): boolean;
  /** Adds what can be learnt about the holder of a row lock (PostgreSQL: pid and query). */
  describeRowLockHolder?(server: ServerAddress, table: string, where: Record<string, unknown>): Promise<Array<{ pid: number; query: string | null }>>;
  /** SQL that returns the current connection/transaction's identity (for tests and diagnostics). */
  readonly connectionIdSql: string;
  /** Advisory locks (src/dialects/<db>/advisory.ts), used by src/locks/advisory.ts. */
  readonly advisory: AdvisoryDialect;
  /** Fencing-token counters in the database (src/dialects/<db>/fencing.ts), used by src/redis (`fencing: { dataSource }`). */
  readonly fencing?: FencingDialect;
  /** Who waits on whom now (src/dialects/<db>/inspect.ts), used by inspectLocks and the `ormlock` command. */
  readonly inspector?: LockInspector;
  /** The lock table of scheduled jobs (src/dialects/<db>/scheduled.ts), used by src/locks/scheduled-database.ts. */
  readonly scheduled?: ScheduledLockDialect;
}

/**
 * The database part of scheduled-job locks (`withScheduledLock` with database storage): one row
 * per job name in a table of its own (`name`, `locked_until`, `locked_at`, `locked_by`, `runs`).
 * Every time is the DATABASE's clock, never a client's; each call is one statement in autocommit
 * on any pooled connection (no session state: safe behind a transaction-mode pooler).
 * `table` is a validated identifier; `name` at most 190 UTF-8 bytes; `holder` unique per run.
 */
export interface ScheduledLockDialect {
  /** Statements that create the lock table if it does not exist. */
  createTableSql(table: string): string[];
  /** The statement that drops it. */
  dropTableSql(table: string): string;
  /**
   * One statement: when the row of `name` is missing or its `locked_until` has passed, sets it to
   * now + `lockAtMostForMs` for `holder` and counts the run. Resolves the run's number (≥ 1,
   * growing with every run of `name`) when this call took the lock, or 0 when it is held.
   */
  tryAcquire(run: RunQuery, table: string, name: string, holder: string, lockAtMostForMs: number): Promise<number>;
  /**
   * Ends `holder`'s run of `name`: `locked_until` becomes max(now, locked_at + `lockAtLeastForMs`).
   * A row that another holder took since (lockAtMostFor passed) is left alone.
   */
  release(run: RunQuery, table: string, name: string, holder: string, lockAtLeastForMs: number): Promise<void>;
  /** True when the error says the lock table does not exist. */
  isMissingTable(error: unknown): boolean;
}

/**
 * The database part of advisory locks. Every method takes one lock id (from `lockId`) on the
 * given PortConnection's connection; the strategy (src/locks/advisory.ts) decides order,
 * re-entry, scope, time budget and errors. `timeoutMs`: undefined waits, 0 tries once.
 * The lock methods resolve `false` when the lock was not obtained in time and throw the
 * (converted) driver error on anything else.
 */
export interface AdvisoryDialect {
  /** The database's identifier of a key: PostgreSQL the signed 64-bit integer as text, MySQL the GET_LOCK name. Sorting these gives the canonical order. */
  lockId(key: ResolvedAdvisoryKey): string;
  /** A failed statement aborts the surrounding transaction (PostgreSQL), so a lock that may time out in a caller's transaction is taken inside a savepoint. */
  readonly failedStatementAbortsTransaction: boolean;
  /**
   * A lock held until the transaction on `qr` ends (only when `capabilities.transactionAdvisoryLocks`).
   * `key`, when given, is written as a comment into the statement (src/dialects/advisory-comment.ts)
   * so that an inspector can show it as the user wrote it.
   */
  lockForTransaction?(qr: PortConnection, id: string, shared: boolean, timeoutMs: number | undefined, key?: ResolvedAdvisoryKey): Promise<boolean>;
  /** A lock held by `qr`'s connection (session) until `unlockSession` or the connection ends. `key`: as above. */
  lockForSession(qr: PortConnection, id: string, shared: boolean, timeoutMs: number | undefined, key?: ResolvedAdvisoryKey): Promise<boolean>;
  /** Releases a session lock on `qr`: false when the connection did not hold it; throws when the connection is gone. */
  unlockSession(qr: PortConnection, id: string, shared: boolean): Promise<boolean>;
  /**
   * Takes the first free lock of `ids` (tried in that order, none waited for) in ONE statement,
   * transaction-scoped where `capabilities.transactionAdvisoryLocks`, else a session lock; `token`,
   * an SQL expression (a sequence's next value), is evaluated in the same statement (PostgreSQL:
   * only when a lock was taken; MySQL/MariaDB: always). Resolves the index of the lock taken and
   * the token as text, or null when every lock was held. Errors are the driver's, unconverted.
   * For counting semaphores (src/locks/semaphore-slots.ts); `key` as for the other locks.
   */
  lockFirstFree?(
    qr: PortConnection,
    ids: readonly string[],
    token: string | undefined,
    key?: ResolvedAdvisoryKey,
  ): Promise<{ index: number; token: string | null } | null>;
  /** True when any connection (this one included) holds the lock. */
  isLocked(run: RunQuery, id: string): Promise<boolean>;
  /** True when the error means the connection, and every session lock on it, is gone. */
  isConnectionLost(error: unknown): boolean;
  /** True when the error says the transaction is aborted (so an unlock must wait for its end). */
  isAbortedTransaction(error: unknown): boolean;
  /** Who holds the lock (PostgreSQL: pid and query), read on a connection outside the pool. */
  describeHolders?(server: ServerAddress, id: string): Promise<Array<{ pid: number; query: string | null }>>;
}

/**
 * The database part of Redis leases' fencing tokens (`new Redlock(clients, { fencing: { dataSource } })`):
 * one counter row per lock key in a table of its own, moved by the statement that hands the token
 * out, in autocommit (a token must never be rolled back with a caller's transaction).
 * `table` is a validated identifier (letters, digits, `_`; quoted here); `keys` are sorted, distinct
 * and at most 190 UTF-8 bytes each (longer lock keys are hashed by the caller).
 */
export interface FencingDialect {
  /** Statements that create the counter table if it does not exist. */
  createTableSql(table: string): string[];
  /** The statement that drops it. */
  dropTableSql(table: string): string;
  /**
   * Moves the counter of every key and returns the new token, strictly above every token handed
   * out before for any of these keys: when it resolves, every key's counter is ≥ the token.
   * One key: one statement. Several keys: PostgreSQL one statement (plus one when the counters
   * moved apart under concurrency), MySQL/MariaDB one per key (plus the same catch-up).
   */
  nextToken(run: RunQuery, table: string, keys: readonly string[]): Promise<bigint>;
  /** True when the error says the counter table (or the token sequence) does not exist (PG 42P01, MySQL 1146). */
  isMissingTable(error: unknown): boolean;
  /**
   * With `capabilities.tokenSequences`: the statement that draws the next value (column `token`)
   * of the token sequence `<table>_seq`, which `createTableSql` creates beside the table.
   */
  nextSequenceSql?(table: string): string;
  /** The same as an SQL expression (text), to draw a token inside another statement. */
  nextSequenceExpression?(table: string): string;
  /** The statement that drops the token sequence. */
  dropSequenceSql?(table: string): string;
}

/** Reads the driver's own error code, whatever TypeORM wrapped it in. */
export function driverCode(error: unknown): { code?: string; errno?: number; message: string } {
  const e = error as { driverError?: unknown; code?: unknown; errno?: unknown; message?: unknown } | undefined;
  const inner = (e?.driverError ?? e) as { code?: unknown; errno?: unknown; message?: unknown } | undefined;
  return {
    code: typeof inner?.code === 'string' ? inner.code : typeof e?.code === 'string' ? e.code : undefined,
    errno: typeof inner?.errno === 'number' ? inner.errno : typeof e?.errno === 'number' ? e.errno : undefined,
    message: String(inner?.message ?? e?.message ?? error),
  };
}
