import type { BeginWithStatement } from '../dialect';
import { closingQuote, commentEnd, lineEnd } from '../sql-text';

/**
 * BEGIN and a SELECT that takes no row lock in one round trip on MariaDB: one compound statement,
 * `BEGIN NOT ATOMIC <begin>; <select>; END`. The server runs it as one statement (the driver's
 * refusal of several statements in one query still holds), the transaction its START
 * TRANSACTION opened stays open after it, and the SELECT's rows come back as the query's first
 * result, followed by the compound statement's own status. The statement's `?` parameters are
 * left to the driver, which writes them in as it always does.
 *
 * Only a SELECT rides (after whitespace and comments, such as an advisory lock's key comment):
 * a write's affected rows and insert id would be the compound statement's, not the write's.
 * Returns undefined (the caller then sends BEGIN on its own first) for a
 * SELECT that could not run inside a compound statement or would run something else there:
 * - a `;` outside quotes and comments (inside BEGIN … END it would start a second statement);
 * - a row lock (`FOR UPDATE`, `LOCK IN SHARE MODE`, `FOR SHARE`: the words UPDATE and SHARE).
 *   Measured on 10.11 with bare mysql2: a row lock taken inside a compound statement makes a
 *   hot row slower for everyone waiting on it (8 and 32 workers on one row: 0.90–0.95× the
 *   throughput of BEGIN and the SELECT sent apart, while a transaction begun inside one and
 *   locking outside it is not), which outweighs the round trip saved (1.14× with 1 worker).
 *   Its `WAIT n` and `NOWAIT` MariaDB refuses inside stored programs anyway;
 * - the words WAIT and NOWAIT elsewhere (refused there too);
 * - a backslash anywhere (whether it escapes a quote depends on the session's sql_mode, so
 *   where a string ends could not be told), an executable comment (`/*!…` or `/*M!…`), an
 *   unclosed quote or comment.
 */
export function beginNotAtomic(begin: string, sql: string, parameters: readonly unknown[]): BeginWithStatement | undefined {
  let rides = verdicts.get(sql);
  if (rides === undefined) {
    rides = canRide(sql);
    if (verdicts.size >= MAX_VERDICTS) verdicts.clear();
    verdicts.set(sql, rides);
  }
  return rides ? { sql: `BEGIN NOT ATOMIC ${begin}; ${sql}; END`, parameters, result: 'first' } : undefined;
}

/** Whether a statement text can ride, kept per text: a transaction's first statement is most often the same few texts (a lock, built once per entity). */
const verdicts = new Map<string, boolean>();
const MAX_VERDICTS = 256;

/** A word: letters, digits, `_` and `$` (sticky: read where `lastIndex` stands). */
const WORD = /[\w$]+/y;

function canRide(sql: string): boolean {
  if (sql.includes('\\')) return false;
  let first = true; // the first word is yet to come: it must be SELECT, followed by whitespace
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === '`') {
      if (first) return false;
      i = closingQuote(sql, i, c);
    } else if (c === '#' || (c === '-' && sql[i + 1] === '-' && /\s/.test(sql[i + 2] ?? ''))) i = lineEnd(sql, i);
    else if (c === '/' && sql[i + 1] === '*') {
      if (sql[i + 2] === '!' || (sql[i + 2] === 'M' && sql[i + 3] === '!')) return false;
      i = commentEnd(sql, i);
    } else if (c === ';') return false;
    else if (isWordStart(sql.charCodeAt(i))) {
      WORD.lastIndex = i;
      const word = WORD.exec(sql)![0];
      if (first) {
        if (!/^SELECT$/i.test(word) || !/\s/.test(sql[i + word.length] ?? '')) return false;
        first = false;
      } else if (word.length <= 6 && /^((NO)?WAIT|UPDATE|SHARE)$/i.test(word)) return false;
      i += word.length;
    } else if (first && !/\s/.test(c)) return false;
    else i++;
    if (i < 0) return false;
  }
  return !first;
}

/** A-Z, a-z, _ */
function isWordStart(code: number): boolean {
  return (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || code === 95;
}
