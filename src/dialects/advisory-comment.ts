/**
 * The advisory key as the user wrote it, carried to the database inside the lock statement
 * itself, so an inspector can show it without any extra round trip on the lock path:
 *
 *   /* ormlock key=S3Worker-Lock ns=shop *\/ SELECT pg_advisory_lock($1::bigint)
 *
 * The comment is the statement's first text (pg_stat_activity truncates long statements at the
 * end). Keys are user input, so nothing of them reaches the SQL as is: every character outside
 * `A-Z a-z 0-9 _ . : ~ , @ + -` is percent-encoded (UTF-8), which leaves no `*`, `/` (no
 * comment end, no PostgreSQL nested comment), `?` (no mysql2 placeholder), `$`, quote,
 * backslash or control character in the text. Values longer than `MAX_VALUE` characters are
 * cut (`cut=1`). The lock ids themselves stay parameters.
 */
const SAFE = /^[A-Za-z0-9_.:~,@+-]$/;
const ALL_SAFE = /^[A-Za-z0-9_.:~,@+-]*$/;
const MAX_VALUE = 160;
const PREFIX = '/* ormlock ';

/** What a lock statement's comment says. */
export interface AdvisoryComment {
  key: string;
  namespace?: string;
  /** True when the key was too long and is shown cut. */
  cut?: boolean;
}

function encode(text: string, max: number): { value: string; cut: boolean } {
  // nothing to encode or cut (the common key): the text itself, without the walk below
  if (text.length <= max && ALL_SAFE.test(text)) return { value: text, cut: false };
  let value = '';
  for (const ch of wellFormed(text)) {
    const piece = SAFE.test(ch) ? ch : [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
    if (value.length + piece.length > max) return { value, cut: true };
    value += piece;
  }
  return { value, cut: false };
}

/** Lone surrogates cannot be UTF-8 encoded; they are shown as U+FFFD (the text is for people only). */
function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** The comment (with a trailing space) to put before an advisory lock statement. */
export function advisoryComment(key: { display: string; namespace: string } | undefined): string {
  if (!key) return '';
  const cached = comments.get(key);
  if (cached !== undefined) return cached;
  const k = encode(key.display, MAX_VALUE);
  let text = `${PREFIX}key=${k.value}`;
  if (key.namespace) text += ` ns=${encode(key.namespace, 64).value}`;
  if (k.cut) text += ' cut=1';
  const comment = `${text} */ `;
  if (Object.isFrozen(key)) comments.set(key, comment); // resolved keys are frozen (and cached): one encoding per key
  return comment;
}

const comments = new WeakMap<object, string>();

/** Reads the comment back from a statement's text (pg_stat_activity.query, PROCESSLIST.INFO). */
export function parseAdvisoryComment(sql: string | null | undefined): AdvisoryComment | undefined {
  if (!sql) return undefined;
  const start = sql.indexOf(PREFIX);
  if (start < 0) return undefined;
  const end = sql.indexOf(' */', start);
  if (end < 0) return undefined;
  const fields = new Map<string, string>();
  for (const part of sql.slice(start + PREFIX.length, end).split(' ')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const key = fields.get('key');
  if (key === undefined) return undefined;
  const out: AdvisoryComment = { key: decode(key) };
  const ns = fields.get('ns');
  if (ns) out.namespace = decode(ns);
  if (fields.get('cut') === '1') out.cut = true;
  return out;
}

function decode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
