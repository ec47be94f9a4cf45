import type { QueryRunner } from 'typeorm';
import type { IsolationLevel } from '../../port';
import { probeError } from './patch';

/**
 * A transaction ormlock opens on a database whose BEGIN can ride with the next statement
 * (`capabilities.beginRidesWithStatement`) keeps its BEGIN until its first statement:
 *
 * - `startDeferred` runs TypeORM's own `startTransaction` (its events, its state), but the
 *   statements it sends to open the transaction (`START TRANSACTION`, and `SET TRANSACTION
 *   ISOLATION LEVEL …` when one is named) are held instead of sent;
 * - the runner's next `query` or `stream`, whoever calls it (the body, a subscriber, COMMIT),
 *   sends the held statements first (as one query, so no sibling's statement comes between
 *   them): nothing runs outside the transaction, and the round trips are those of before;
 * - a locked read by primary key takes them instead (`takeHeldBegin`) and sends them with its
 *   SELECT in one round trip (locked-read.ts): the lock then costs no round trip of its own.
 *
 * Anything else TypeORM sends while it begins (a subscriber's query) goes out as usual.
 */
const HELD = Symbol('ormlock.heldBegin');

/** What startTransaction sends to open a transaction on PostgreSQL (TypeORM 0.3.20 to 1.x). */
const OPENING = /^(START TRANSACTION|SET TRANSACTION ISOLATION LEVEL [A-Z ]+)$/;

interface Held {
  statements: string[];
  /** Puts the runner's own query and stream back. */
  restore(): void;
}

type Deferring = QueryRunner & { [HELD]?: Held };

/** TypeORM's `startTransaction(isolation)` on `qr`, its opening statements held for the first statement. */
export async function startDeferred(qr: QueryRunner, isolation: IsolationLevel | undefined): Promise<void> {
  const runner = qr as Deferring;
  /* eslint-disable @typescript-eslint/unbound-method -- called with .call(runner, …) */
  const query = runner.query as (this: QueryRunner, sql: string, parameters?: unknown[], structured?: boolean) => Promise<any>;
  const stream = runner.stream;
  /* eslint-enable @typescript-eslint/unbound-method */
  const held: Held = {
    statements: [],
    restore() {
      runner.query = query;
      runner.stream = stream;
      if (runner[HELD] === held) runner[HELD] = undefined;
    },
  };
  let opening = true;
  // sent at once, as one query (a sibling's statement cannot come between them), before anything else is sent
  const flush = (): Promise<unknown> => query.call(runner, takeHeldBegin(runner)!);
  runner.query = function (this: QueryRunner, sql: string, parameters?: unknown[], structured?: boolean) {
    if (opening && OPENING.test(sql) && !parameters?.length) {
      held.statements.push(sql);
      return Promise.resolve(undefined);
    }
    if (!held.statements.length) return query.call(this, sql, parameters, structured);
    return flush().then(() => query.call(this, sql, parameters, structured));
  } as QueryRunner['query'];
  runner.stream = function (this: QueryRunner, ...args: Parameters<QueryRunner['stream']>) {
    if (!held.statements.length) return stream.apply(this, args);
    return flush().then(() => stream.apply(this, args));
  } as QueryRunner['stream'];
  runner[HELD] = held;
  try {
    await qr.startTransaction(isolation);
  } catch (error) {
    held.restore();
    throw error;
  } finally {
    opening = false;
  }
  if (!held.statements.length) held.restore(); // TypeORM sent nothing we hold: nothing to wait for
}

/**
 * The statements that open `qr`'s transaction, when they are still held: the caller now owns
 * them and must send them first (with its own statement). Undefined when nothing is held.
 */
export function takeHeldBegin(qr: QueryRunner): string | undefined {
  const held = (qr as Deferring)[HELD];
  if (!held?.statements.length) return undefined;
  const begin = held.statements.join('; ');
  held.statements.length = 0;
  held.restore();
  return begin;
}

/** Whether `qr` holds its BEGIN for its first statement (without taking it). */
export function holdsBegin(qr: QueryRunner): boolean {
  return ((qr as Deferring)[HELD]?.statements.length ?? 0) > 0;
}

type DriverQuery = (this: unknown, ...args: unknown[]) => unknown;

/**
 * Runs `text` (the held BEGIN and one statement, as `beginWithStatement` wrote it) through
 * TypeORM's own `query` (its logging, events, slow-query log and QueryFailedError) and returns
 * the rows of its last statement. TypeORM keeps the rows of a single result only; the driver
 * answers a multi-statement query with one result per statement, so for this one text the
 * driver client's answer is narrowed to its last result. The query is sent in the same tick as
 * the BEGIN was taken: a sibling's statement, sent later, cannot reach the connection before it.
 */
export function queryWithBegin(qr: QueryRunner, text: string): Promise<any[]> {
  const client = (qr as { databaseConnection?: { query: DriverQuery } }).databaseConnection;
  if (!client) return Promise.reject(noRows());
  const base = client.query;
  client.query = function (this: unknown, ...args: unknown[]) {
    const answer = base.apply(this, args);
    if (args[0] !== text) return answer;
    return (answer as Promise<unknown>).then((result) => (Array.isArray(result) ? result[result.length - 1] : result));
  };
  const restore = () => {
    client.query = base;
  };
  return (qr.query(text) as Promise<unknown>).then(
    (rows) => {
      restore();
      if (!Array.isArray(rows)) throw noRows();
      return rows;
    },
    (error: unknown) => {
      restore();
      throw error;
    },
  );
}

function noRows() {
  return probeError([{ patch: 'BEGIN sent with a locked read', problem: 'QueryRunner.query returned no rows for the last result of a multi-statement query' }]);
}
