import type { BeginWithStatement } from '../dialect';
import { closingQuote, commentEnd, lineEnd } from '../sql-text';

/**
 * BEGIN and a statement in one round trip on PostgreSQL: one query without parameters, so the
 * driver sends it with the simple query protocol, which runs several statements in order (an
 * explicit BEGIN among them opens the transaction block the rest runs in). The statement's
 * `$n` parameters are written into it as quoted literals: an untyped literal takes its type
 * from where it stands, as an untyped parameter does, so the statement means the same.
 *
 * Returns undefined (the caller then sends BEGIN on its own first) for anything this cannot
 * write without changing what runs:
 * - a value whose literal would need escaping: only integers, and strings of printable ASCII
 *   without a quote or a backslash (ids, UUIDs, dates, names, lists of lock ids) are written in;
 * - a statement with a `;` outside quotes (a second statement would run where the driver would
 *   have refused it), a dollar-quoted string, or an `E'…'` string (its backslashes);
 * - a placeholder without its value, or a value without its placeholder.
 */
export function beginWithStatement(begin: string, sql: string, parameters: readonly unknown[]): BeginWithStatement | undefined {
  const literals: string[] = [];
  for (const value of parameters) {
    const literal = quotedLiteral(value);
    if (literal === undefined) return undefined;
    literals.push(literal);
  }
  const used = new Array<boolean>(literals.length).fill(false);
  let out = '';
  let from = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "'") {
      if (/[eE]/.test(sql[i - 1] ?? '') && !/[\w$]/.test(sql[i - 2] ?? '')) return undefined; // E'…'
      i = closingQuote(sql, i, "'");
    } else if (c === '"') i = closingQuote(sql, i, '"');
    else if (c === '-' && sql[i + 1] === '-') i = lineEnd(sql, i);
    else if (c === '/' && sql[i + 1] === '*') i = commentEnd(sql, i);
    else if (c === ';') return undefined;
    else if (c === '$') {
      const digits = /^\$(\d+)/.exec(sql.slice(i));
      if (!digits) return undefined; // a dollar quote ($$ or $tag$)
      if (/[\w$]/.test(sql[i - 1] ?? '')) {
        i += digits[0].length; // part of a name (a$1)
        continue;
      }
      const n = Number(digits[1]) - 1;
      if (n < 0 || n >= literals.length) return undefined;
      used[n] = true;
      out += sql.slice(from, i) + literals[n];
      i += digits[0].length;
      from = i;
      continue;
    } else i++;
    if (i < 0) return undefined; // an unclosed quote or comment
  }
  if (used.includes(false)) return undefined;
  return { sql: `${begin}; ${out}${sql.slice(from)}`, result: 'last' };
}

/** Printable ASCII but the quote and the backslash: the same literal whatever `standard_conforming_strings` says. */
const SAFE_STRING = /^[\x20-\x26\x28-\x5b\x5d-\x7e]{0,1000}$/;

function quotedLiteral(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? `'${value}'` : undefined;
  if (typeof value === 'bigint') return `'${value}'`;
  if (typeof value === 'string') return SAFE_STRING.test(value) ? `'${value}'` : undefined;
  return undefined;
}
