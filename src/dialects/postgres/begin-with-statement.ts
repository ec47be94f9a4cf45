/**
 * BEGIN and a statement in one round trip on PostgreSQL: one query without parameters, so the
 * driver sends it with the simple query protocol, which runs several statements in order (an
 * explicit BEGIN among them opens the transaction block the rest runs in). The statement's
 * `$n` parameters are written into it as quoted literals: an untyped literal takes its type
 * from where it stands, as an untyped parameter does, so the statement means the same.
 *
 * Only values whose literal needs no escaping are written in: integers, and strings of letters,
 * digits and `_ - . : @ +` (ids, UUIDs, names). Anything else returns undefined, and the caller
 * sends BEGIN on its own first.
 */
export function beginWithStatement(begin: string, sql: string, parameters: readonly unknown[]): string | undefined {
  const literals: string[] = [];
  for (const value of parameters) {
    const literal = quotedLiteral(value);
    if (literal === undefined) return undefined;
    literals.push(literal);
  }
  const used = new Set<string>();
  // a placeholder is `$n` outside quotes and names: not right after a word character, a quote or `$`
  const text = sql.replace(/(?<![\w"'$])\$(\d+)(?!\d)/g, (whole, n: string) => {
    const literal = literals[Number(n) - 1];
    if (literal === undefined) return whole;
    used.add(n);
    return literal;
  });
  if (used.size !== literals.length || /(?<![\w"'$])\$\d/.test(text)) return undefined;
  return `${begin}; ${text}`;
}

const SAFE_STRING = /^[\w\-.:@+]{0,200}$/;

function quotedLiteral(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? `'${value}'` : undefined;
  if (typeof value === 'bigint') return `'${value}'`;
  if (typeof value === 'string') return SAFE_STRING.test(value) ? `'${value}'` : undefined;
  return undefined;
}
