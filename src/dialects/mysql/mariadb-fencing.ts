import { driverCode } from '../dialect';
import { MysqlFencing } from './fencing';

const quote = (name: string) => `\`${name}\``;

/**
 * MariaDB: MySQL's counter table, plus a sequence `<table>_seq` (MariaDB 10.3+) for the fencing
 * tokens of database semaphores. NEXTVAL is not rolled back with the transaction and holds no
 * lock until commit, so it can be drawn inside the caller's transaction.
 */
export class MariaDbFencing extends MysqlFencing {
  override createTableSql(table: string): string[] {
    return [...super.createTableSql(table), `CREATE SEQUENCE IF NOT EXISTS ${quote(`${table}_seq`)}`];
  }

  nextSequenceSql(table: string): string {
    return `SELECT ${this.nextSequenceExpression(table)} AS token`;
  }

  nextSequenceExpression(table: string): string {
    return `CAST(NEXTVAL(${quote(`${table}_seq`)}) AS CHAR)`;
  }

  /** Also an unknown sequence (ER_UNKNOWN_SEQUENCES, 4091). */
  override isMissingTable(error: unknown): boolean {
    return super.isMissingTable(error) || driverCode(error).errno === 4091;
  }

  dropSequenceSql(table: string): string {
    return `DROP SEQUENCE IF EXISTS ${quote(`${table}_seq`)}`;
  }
}
