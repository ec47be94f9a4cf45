import type { Logger } from 'typeorm';

/**
 * A transaction's BEGIN sent with its first statement in one round trip: the two parts (PostgreSQL:
 * one after the other in one query; MariaDB: in a compound statement, or logged one after the
 * other when pipelined, the level first there).
 */
const BEGIN_WITH = /^(START TRANSACTION(?:; SET TRANSACTION ISOLATION LEVEL [A-Z ]+)?|SET TRANSACTION ISOLATION LEVEL [A-Z ]+; START TRANSACTION); ([\s\S]+)$/;
const BEGIN_NOT_ATOMIC = /^BEGIN NOT ATOMIC ((?:SET TRANSACTION ISOLATION LEVEL [A-Z ]+; )?START TRANSACTION); ([\s\S]+); END$/;

/** The statements of one query as sent: a BEGIN that rode with a statement counts as its own. */
export function statementsOf(query: string): string[] {
  const m = BEGIN_WITH.exec(query) ?? BEGIN_NOT_ATOMIC.exec(query);
  return m ? [...m[1].split('; '), m[2]] : [query];
}

/**
 * A TypeORM logger that records every statement sent, per connection-independent list, so
 * tests can count statements (`log.start(); …; log.stop()`) and round trips (`log.sent`: the
 * queries as sent, a BEGIN that rode with the next statement in one of them).
 */
export class QueryLog implements Logger {
  private recording = false;
  readonly queries: string[] = [];
  readonly sent: string[] = [];
  start(): void {
    this.queries.length = 0;
    this.sent.length = 0;
    this.recording = true;
  }
  stop(): string[] {
    this.recording = false;
    return [...this.queries];
  }
  logQuery(query: string): void {
    if (!this.recording) return;
    this.sent.push(query);
    this.queries.push(...statementsOf(query));
  }
  logQueryError(): void {}
  logQuerySlow(): void {}
  logSchemaBuild(): void {}
  logMigration(): void {}
  log(): void {}
}
