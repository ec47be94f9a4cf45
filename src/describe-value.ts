/**
 * What a value is, for messages: used by the shape checks (src/arguments.ts) and the error
 * factories (src/faults/), so it imports nothing.
 */

/** What a value is, for messages: `null`, `a string ('fast')`, `a Promise (a forgotten await?)`, … */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  if (isThenable(value)) return 'a Promise (a forgotten await?)';
  switch (typeof value) {
    case 'string':
      return `a string ('${value.length > 40 ? `${value.slice(0, 40)}…` : value}')`;
    case 'number':
    case 'bigint':
    case 'boolean':
      return `${typeof value} ${String(value)}`;
    case 'symbol':
      return 'a symbol';
    case 'function':
      return `a function${value.name ? ` (${value.name})` : ''}`;
    default: {
      const ctor = (value as object).constructor;
      return ctor && ctor !== Object ? `a ${ctor.name || 'object'}` : 'an object';
    }
  }
}

/** A Promise or another thenable. */
export function isThenable(value: unknown): boolean {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}
