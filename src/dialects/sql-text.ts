/** Scanning SQL text for what lies outside quotes and comments (the BEGIN writers of each dialect). */

/** The index after the quote that closes the one at `start` (a doubled quote is part of the text), or -1. */
export function closingQuote(sql: string, start: number, quote: string): number {
  let i = start + 1;
  while (i < sql.length) {
    if (sql[i] === quote) {
      if (sql[i + 1] === quote) i += 2;
      else return i + 1;
    } else i++;
  }
  return -1;
}

/** The index after the line a `--` (or `#`) comment at `start` ends. */
export function lineEnd(sql: string, start: number): number {
  const end = sql.indexOf('\n', start);
  return end < 0 ? sql.length : end + 1;
}

/** The index after the `*\/` that closes the comment at `start`, or -1. */
export function commentEnd(sql: string, start: number): number {
  const end = sql.indexOf('*/', start + 2);
  return end < 0 ? -1 : end + 2;
}
