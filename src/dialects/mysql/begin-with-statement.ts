import type { BeginWithStatement } from '../dialect';
import { closingQuote, commentEnd, lineEnd } from '../sql-text';

/**
 * BEGIN and a SELECT in one round trip on MariaDB, in one of two ways.
 *
 * **A SELECT without a row lock: one compound statement**, `BEGIN NOT ATOMIC <begin>; <select>;
 * END`. The server runs it as one statement (the driver's refusal of several statements in one
 * query still holds), the transaction its START TRANSACTION opened stays open after it, and the
 * SELECT's rows come back as the query's first result, followed by the compound statement's own
 * status. The statement's `?` parameters are left to the driver, which writes them in as it
 * always does. If START TRANSACTION fails, the compound statement stops before the SELECT (which
 * matters for `GET_LOCK`, a session lock).
 *
 * **A SELECT with a row lock (`FOR UPDATE`, `LOCK IN SHARE MODE`, `FOR SHARE`, with `WAIT n`,
 * `NOWAIT` or `SKIP LOCKED`): pipelined.** The driver connection is handed the SELECT alone, and
 * the opening statements are written to the socket just ahead of it, without waiting for their
 * answers (mysql2-pipeline.ts); the server runs them one after the other as if each had been
 * awaited. Measured on 10.11 with bare mysql2: a row lock taken inside a compound statement made a
 * hot row slower for everyone waiting on it (8 and 32 workers on one row: 0.90–0.95× the
 * throughput of BEGIN and the SELECT sent apart), and MariaDB refuses `WAIT n` and `NOWAIT` inside
 * stored programs. Pipelined, the server sees exactly the statements it would see sent apart: bare
 * mysql2, one row, 24 interleaved rounds, 1.01× (8 workers) and 1.03× (32) the throughput of
 * BEGIN sent apart, and 1.09× with one worker on 1,000 rows.
 * Should an opening statement fail, the SELECT has run anyway: outside a transaction its row
 * locks end with it, so it leaves nothing behind, and the caller gets the failure.
 *
 * Only a SELECT rides (after whitespace and comments, such as an advisory lock's key comment):
 * a write's affected rows and insert id would be the compound statement's, and pipelined, a
 * write would stay written if BEGIN failed. Returns undefined (the caller then sends BEGIN on its
 * own first) for a SELECT with:
 * - a `;` outside quotes and comments (a second statement);
 * - a backslash anywhere (whether it escapes a quote depends on the session's sql_mode, so
 *   where a string ends could not be told), an executable comment (`/*!…` or `/*M!…`), an
 *   unclosed quote or comment.
 */
export function beginNotAtomic(begin: string, sql: string, parameters: readonly unknown[]): BeginWithStatement | undefined {
  let rides = verdicts.get(sql);
  if (rides === undefined) {
    rides = howItRides(sql);
    if (verdicts.size >= MAX_VERDICTS) verdicts.clear();
    verdicts.set(sql, rides);
  }
  if (rides === 'compound') return { sql: `BEGIN NOT ATOMIC ${begin}; ${sql}; END`, parameters, result: 'first' };
  if (rides === 'pipelined') return { sql: `${begin}; ${sql}`, parameters, result: 'pipelined' };
  return undefined;
}

type Ride = 'compound' | 'pipelined' | 'alone';

/** How a statement text rides, kept per text: a transaction's first statement is most often the same few texts (a lock, built once per entity). */
const verdicts = new Map<string, Ride>();
const MAX_VERDICTS = 256;

/** A word: letters, digits, `_` and `$` (sticky: read where `lastIndex` stands). */
const WORD = /[\w$]+/y;

function howItRides(sql: string): Ride {
  if (sql.includes('\\')) return 'alone';
  let first = true; // the first word is yet to come: it must be SELECT, followed by whitespace
  let rowLock = false;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === '`') {
      if (first) return 'alone';
      i = closingQuote(sql, i, c);
    } else if (c === '#' || (c === '-' && sql[i + 1] === '-' && /\s/.test(sql[i + 2] ?? ''))) i = lineEnd(sql, i);
    else if (c === '/' && sql[i + 1] === '*') {
      if (sql[i + 2] === '!' || (sql[i + 2] === 'M' && sql[i + 3] === '!')) return 'alone';
      i = commentEnd(sql, i);
    } else if (c === ';') return 'alone';
    else if (isWordStart(sql.charCodeAt(i))) {
      WORD.lastIndex = i;
      const word = WORD.exec(sql)![0];
      if (first) {
        if (!/^SELECT$/i.test(word) || !/\s/.test(sql[i + word.length] ?? '')) return 'alone';
        first = false;
      } else if (word.length <= 6 && /^((NO)?WAIT|UPDATE|SHARE)$/i.test(word)) rowLock = true;
      i += word.length;
    } else if (first && !/\s/.test(c)) return 'alone';
    else i++;
    if (i < 0) return 'alone';
  }
  if (first) return 'alone';
  return rowLock ? 'pipelined' : 'compound';
}

/** A-Z, a-z, _ */
function isWordStart(code: number): boolean {
  return (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || code === 95;
}
