import type { Logger } from 'typeorm';

/**
 * A TypeORM logger that records every statement sent, per connection-independent list,
 * so tests can count round trips: `log.start(); …; log.stop()` → the statements.
 */
export class QueryLog implements Logger {
  private recording = false;
  readonly queries: string[] = [];
  start(): void {
    this.queries.length = 0;
    this.recording = true;
  }
  stop(): string[] {
    this.recording = false;
    return [...this.queries];
  }
  logQuery(query: string): void {
    if (this.recording) this.queries.push(query);
  }
  logQueryError(): void {}
  logQuerySlow(): void {}
  logSchemaBuild(): void {}
  logMigration(): void {}
  log(): void {}
}
