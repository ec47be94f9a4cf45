import type { QueryRunner } from 'typeorm';
import type { LockDialect } from '../../../dialects/dialect';
import type { IsolationLevel } from '../../port';
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
 *   values into it (`beginWithStatement`); otherwise, and before a `stream`, it sends them on
 *   their own first, as TypeORM would have.
 *
 * Either way they go out in the same tick as the call that takes them, so a statement a sibling
 * sends later cannot reach the connection before the BEGIN: nothing runs outside the
 * transaction. Anything TypeORM sends while it begins (a subscriber's query) goes out as usual.
 */

/** What startTransaction sends to open a transaction on PostgreSQL (TypeORM 0.3.20 to 1.x). */
const OPENING = /^(START TRANSACTION|SET TRANSACTION ISOLATION LEVEL [A-Z ]+)$/;

type Query = (this: QueryRunner, sql: string, parameters?: unknown[], structured?: boolean) => Promise<any>;

interface Held {
  statements: string[];
  /** Puts the runner's own query and stream back, and returns the held statements as one text. */
  take(): string;
}

/** TypeORM's `startTransaction(isolation)` on `qr`, its opening statements held for the first statement. */
export async function startDeferred(
  qr: QueryRunner,
  isolation: IsolationLevel | undefined,
  beginWith: NonNullable<LockDialect['beginWithStatement']>,
): Promise<void> {
  /* eslint-disable @typescript-eslint/unbound-method -- called with .call(qr, …) */
  const query = qr.query as Query;
  const stream = qr.stream;
  /* eslint-enable @typescript-eslint/unbound-method */
  const held: Held = {
    statements: [],
    take() {
      const begin = this.statements.join('; ');
      this.statements.length = 0;
      qr.query = query;
      qr.stream = stream;
      return begin;
    },
  };
  let opening = true;
  qr.query = function (this: QueryRunner, sql: string, parameters?: unknown[], structured?: boolean) {
    if (opening && OPENING.test(sql) && !parameters?.length) {
      held.statements.push(sql);
      return Promise.resolve(undefined);
    }
    if (!held.statements.length) return query.call(this, sql, parameters, structured);
    const begin = held.take();
    const text = beginWith(begin, sql, parameters ?? []);
    if (text !== undefined) return queryWithBegin(qr, query, text, structured);
    const begun = query.call(qr, begin);
    return begun.then(() => query.call(this, sql, parameters, structured));
  } as QueryRunner['query'];
  qr.stream = function (this: QueryRunner, ...args: Parameters<QueryRunner['stream']>) {
    if (!held.statements.length) return stream.apply(this, args);
    const begun = query.call(qr, held.take());
    return begun.then(() => stream.apply(this, args));
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

type DriverQuery = (this: unknown, ...args: unknown[]) => unknown;

/**
 * Runs `text` (the held BEGIN and one statement, as `beginWithStatement` wrote it) through
 * TypeORM's own `query` (its logging, events, slow-query log, QueryFailedError and result
 * shapes). TypeORM reads a single result only; the driver answers a multi-statement query with
 * one result per statement, so for this one text the driver client's answer is narrowed to its
 * last result. Sent in the same tick as the BEGIN was taken.
 */
export function queryWithBegin(qr: QueryRunner, query: Query, text: string, structured?: boolean): Promise<any> {
  const client = (qr as { databaseConnection?: { query: DriverQuery } }).databaseConnection;
  if (!client) return Promise.reject(notNarrowed());
  const base = client.query;
  let narrowed = false;
  client.query = function (this: unknown, ...args: unknown[]) {
    const answer = base.apply(this, args) as Promise<unknown> | undefined;
    if (args[0] !== text || typeof answer?.then !== 'function') return answer;
    narrowed = true;
    return answer.then((result) => (Array.isArray(result) ? result[result.length - 1] : result));
  };
  return query.call(qr, text, undefined, structured).then(
    (result) => {
      client.query = base;
      if (!narrowed) throw notNarrowed();
      return result;
    },
    (error: unknown) => {
      client.query = base;
      throw error;
    },
  );
}

function notNarrowed() {
  return probeError([
    { patch: 'BEGIN sent with the first statement', problem: 'QueryRunner.query did not hand the statement to its driver connection’s query()' },
  ]);
}
