import type { LockWait } from '../dialects/inspect';

const COLUMNS = ['WAITING', 'WAITED', 'LOCK', 'ON', 'MODE', 'BLOCKED BY', 'BLOCKER STATE', 'BLOCKER QUERY', 'WAITING QUERY'] as const;
const QUERY_WIDTH = 60;

/** The waits as a plain-text table for a terminal (one line per wait; `maxRows` cuts it). */
export function formatLockTable(waits: readonly LockWait[], options: { maxRows?: number } = {}): string {
  if (waits.length === 0) return 'no lock waits';
  const shown = options.maxRows !== undefined && waits.length > options.maxRows ? waits.slice(0, options.maxRows) : waits;
  const rows = shown.map((w) => [
    String(w.waiting.pid),
    formatMs(w.waiting.waitedMs),
    w.lock.kind,
    lockSubject(w),
    w.lock.mode ?? '',
    String(w.blocking.pid),
    `${w.blocking.state ?? ''}${w.blocking.waiting ? ' (waits too)' : ''}`,
    oneLine(w.blocking.query),
    oneLine(w.waiting.query),
  ]);
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const more = waits.length - shown.length;
  return [line(COLUMNS), ...rows.map(line), ...(more ? [`… and ${more} more`] : [])].join('\n');
}

/** What a wait is on, for people: the advisory key (with its namespace), the table, or the lock id. */
export function lockSubject(w: LockWait): string {
  if (w.lock.key !== undefined) return `${w.lock.namespace ? `${w.lock.namespace}:` : ''}${JSON.stringify(w.lock.key)}`;
  if (w.lock.table) return w.lock.table;
  return w.lock.id ?? '';
}

function formatMs(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function oneLine(sql: string | null): string {
  if (!sql) return '';
  // ormlock's key comment is already the ON column
  const s = sql
    .replace(/^\s*\/\* ormlock [^*]*\*\/\s*/, '')
    .replace(/\s+/g, ' ')
    .trim();
  // Terminal control characters from statement text never reach the terminal.
  const safe = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return safe.length > QUERY_WIDTH ? `${safe.slice(0, QUERY_WIDTH - 1)}…` : safe;
}
