import type { QueryRunner } from 'typeorm';
import type { BeginWithStatement, LockDialect } from '../../../dialects/dialect';
import type { IsolationLevel } from '../../port';
import { pipelines, sendPipelined } from './mysql2-pipeline';
import { probeError } from './patch';

/**
 * A transaction ormlock opens on a database whose BEGIN can ride with the next statement
 * (`capabilities.beginRidesWithStatement`) sends its BEGIN with its first statement:
 *
 * - `startDeferred` runs TypeORM's own `startTransaction` (its events, its state), but the
 *   statements it sends to open the transaction (`START TRANSACTION`, and `SET TRANSACTION
 *   ISOLATION LEVEL …` when one is named) are held instead of sent;
 * - the runner's next `query`, whoever calls it (the lock, the body, a subscriber, COMMIT),
 *   sends them with its statement in one query where the dialect can write the statement's
 *   values into it (`beginWithStatement`), or writes them just ahead of it on the driver
 *   connection (`result: 'pipelined'`, mysql2-pipeline.ts); otherwise, and before a `stream`, it
 *   sends them on their own first, as TypeORM would have.
 *
 * Either way they go out in the same tick as the call that takes them, so a statement a sibling
 * sends later cannot reach the connection before the BEGIN: nothing runs outside the
 * transaction. Anything TypeORM sends while it begins (a subscriber's query) goes out as usual.
 */

/** What startTransaction sends to open a transaction (PostgreSQL and MySQL runners, TypeORM 0.3.20 to 1.x). */
const OPENING = /^(START TRANSACTION|SET TRANSACTION ISOLATION LEVEL [A-Z ]+)$/;

type BeginWith = NonNullable<LockDialect['beginWithStatement']>;
type Query = (this: QueryRunner, sql: string, parameters?: unknown[], structured?: boolean) => Promise<any>;

interface Held {
  statements: string[];
  /** Puts the runner's own query and stream back, and returns the held statements. */
  take(): string[];
}

/** TypeORM's `startTransaction(isolation)` on `qr`, its opening statements held for the first statement. */
export async function startDeferred(qr: QueryRunner, isolation: IsolationLevel | undefined, beginWith: BeginWith): Promise<void> {
  /* eslint-disable @typescript-eslint/unbound-method -- called with .call(qr, …) */
  const query = qr.query as Query;
  const stream = qr.stream;
  /* eslint-enable @typescript-eslint/unbound-method */
  const held: Held = {
    statements: [],
    take() {
      const taken = this.statements;
      this.statements = [];
      qr.query = query;
      qr.stream = stream;
      return taken;
    },
  };
  // the query that sends held statements with `sql`, where the dialect can write it and the driver connection can send it:
  // take its several results (one query), or the statements written ahead of the statement (pipelined)
  const ride: BeginWith = (begin, sql, parameters) => {
    const begun = beginWith(begin, sql, parameters);
    if (begun === undefined) return undefined;
    return (begun.result === 'pipelined' ? pipelines(driverConnection(qr)) : takesSeveralResults(qr)) ? begun : undefined;
  };
  let opening = true;
  qr.query = function (this: QueryRunner, sql: string, parameters?: unknown[], structured?: boolean) {
    if (opening && OPENING.test(sql) && !parameters?.length) {
      held.statements.push(sql);
      return Promise.resolve(undefined);
    }
    if (!held.statements.length) return query.call(this, sql, parameters, structured);
    const opened = held.take();
    const begun = ride(opened.join('; '), sql, parameters ?? []);
    if (begun !== undefined) return queryWithBegin(qr, query, begun, structured, { opening: opened, statement: sql });
    return beginAlone(qr, query, opened, ride).then(() => query.call(this, sql, parameters, structured));
  } as QueryRunner['query'];
  qr.stream = function (this: QueryRunner, ...args: Parameters<QueryRunner['stream']>) {
    if (!held.statements.length) return stream.apply(this, args);
    return beginAlone(qr, query, held.take(), ride).then(() => stream.apply(this, args));
  } as QueryRunner['stream'];
  try {
    await qr.startTransaction(isolation);
  } catch (error) {
    held.take();
    throw error;
  } finally {
    opening = false;
  }
  if (!held.statements.length) held.take(); // TypeORM sent nothing we hold: nothing to wait for
}

/**
 * Sends the held opening statements without a statement of the caller's, all in this tick: in
 * one query where the dialect lets the last ride with the others (PostgreSQL), else each as
 * its own query (MySQL refuses several statements in one), none awaited before the next is
 * sent, so a statement a sibling sends later still comes after them.
 */
function beginAlone(qr: QueryRunner, query: Query, opened: string[], ride: BeginWith): Promise<unknown> {
  const last = opened.length - 1;
  const begun = last > 0 ? ride(opened.slice(0, last).join('; '), opened[last], []) : undefined;
  if (begun !== undefined) return queryWithBegin(qr, query, begun);
  return Promise.all(opened.map((statement) => query.call(qr, statement)));
}

/** mysql2's CLIENT_MULTI_RESULTS flag: without it the server refuses a compound statement's result set. */
const MULTI_RESULTS = 0x20000;

/** False for a driver connection that said it takes one result per query (mysql2 with `flags: ['-MULTI_RESULTS']`). */
function takesSeveralResults(qr: QueryRunner): boolean {
  const flags = (driverConnection(qr) as { config?: { clientFlags?: unknown } } | undefined)?.config?.clientFlags;
  return typeof flags !== 'number' || (flags & MULTI_RESULTS) !== 0;
}

/** The runner's driver connection (pg client, mysql2 connection or its promise() wrapper), once it connected. */
function driverConnection(qr: QueryRunner): unknown {
  return (qr as { databaseConnection?: unknown }).databaseConnection;
}

/** A statement whose opening statements are written ahead of it (`result: 'pipelined'`). */
interface Pipelined {
  opening: readonly string[];
  /** The statement alone, as the driver connection gets it. */
  statement: string;
}

type DriverQuery = (this: unknown, ...args: unknown[]) => unknown;
type DriverCallback = (error: unknown, result?: unknown, fields?: unknown) => void;

/**
 * Runs `begun` (the held BEGIN and one statement, as `beginWithStatement` wrote them) through
 * TypeORM's own `query` (its logging, events, slow-query log, QueryFailedError and result
 * shapes). TypeORM reads a single result only; the driver answers this query with several (one
 * per statement on PostgreSQL, the SELECT's and the compound statement's on MariaDB), so for
 * this one query the driver connection's answer is narrowed to the statement's: a promise's
 * result (pg) or a callback's results and fields (mysql2, whose promise wrapper calls it too).
 * Pipelined (`pipelined` given), the driver connection gets the statement alone, with the opening
 * statements written ahead of it, and answers with the statement's result.
 * Sent in the same tick as the BEGIN was taken.
 */
export function queryWithBegin(qr: QueryRunner, query: Query, begun: BeginWithStatement, structured?: boolean, pipelined?: Pipelined): Promise<any> {
  const client = (qr as { databaseConnection?: { query: DriverQuery } }).databaseConnection;
  if (!client) return Promise.reject(notNarrowed());
  const own = Object.prototype.hasOwnProperty.call(client, 'query');
  const base = client.query;
  const restore = () => {
    if (own) client.query = base;
    else delete (client as { query?: DriverQuery }).query;
  };
  const { sql } = begun;
  let handed = false; // the driver connection got the text (and its answer is narrowed, or pipelined)
  let shape: string | undefined; // what the driver answered when it was not one result per statement
  // pg: one Result per statement, BEGIN's first; mysql2: the SELECT's rows, then the compound statement's status
  const narrow = (result: unknown): unknown => {
    if (Array.isArray(result)) {
      if (begun.result === 'last' && result.length > 1) return result[result.length - 1];
      if (begun.result === 'first' && result.length === 2 && Array.isArray(result[0])) return result[0];
    }
    shape = Array.isArray(result) ? `an array of ${result.length}` : typeof result;
    return result;
  };
  client.query = function (this: unknown, ...args: unknown[]) {
    const text = typeof args[0] === 'string' ? args[0] : (args[0] as { sql?: unknown } | null)?.sql;
    if (text !== sql) return base.apply(this, args);
    if (begun.result === 'pipelined') {
      if (!pipelined) throw notPipelined();
      handed = true;
      args[0] = typeof args[0] === 'string' ? pipelined.statement : { ...(args[0] as object), sql: pipelined.statement };
      return sendPipelined(this, pipelined.opening, () => base.apply(this, args));
    }
    const last = args.length - 1;
    if (typeof args[last] === 'function') {
      const callback = args[last] as DriverCallback;
      handed = true;
      args[last] = (error: unknown, result?: unknown, fields?: unknown) =>
        error ? callback(error, result, fields) : callback(error, narrow(result), Array.isArray(fields) ? fields[0] : fields);
      return base.apply(this, args);
    }
    const answer = base.apply(this, args) as Promise<unknown> | undefined;
    if (typeof answer?.then !== 'function') return answer;
    handed = true;
    return answer.then(narrow);
  };
  return query.call(qr, sql, begun.parameters as unknown[] | undefined, structured).then(
    (result) => {
      restore();
      if (!handed) throw notNarrowed();
      if (shape) throw notOneResultPerStatement(shape);
      return result;
    },
    (error: unknown) => {
      restore();
      throw error;
    },
  );
}

function notOneResultPerStatement(shape: string) {
  return probeError([{ patch: 'BEGIN sent with the first statement', problem: `the driver answered the query with ${shape}, not one result per statement` }]);
}

function notPipelined() {
  return probeError([{ patch: 'BEGIN written ahead of the first statement', problem: 'the opening statements and the statement alone were not given' }]);
}

function notNarrowed() {
  return probeError([
    { patch: 'BEGIN sent with the first statement', problem: 'QueryRunner.query did not hand the statement to its driver connection’s query()' },
  ]);
}
