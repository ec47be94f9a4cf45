/**
 * What the stress suite measured, printed once at the end of the run by the root `afterAll`
 * hook (test/stress/support/hooks.ts). Tests record into `summary` as they go; a failing test
 * still leaves what it measured.
 */

export interface CounterRun {
  strategy: string;
  backend: string;
  /** false: the control run without the lock. */
  locked: boolean;
  ops: number;
  /** Increments that were done (acknowledged) but are missing from the counter(s). */
  lost: number;
  failed: number;
  seconds: number;
  note?: string;
}

export interface FaultRecord {
  kind: string;
  backend: string;
  survived: boolean;
  detail: string;
}

export interface BadInputRecord {
  api: string;
  backend: string;
  input: string;
  /** 'works', or the error class and message fragment it must give. */
  expected: string;
  /** reject: must throw; hostile: a hostile key or id that must work (and lock); valid: an option valid on this database. */
  kind: 'reject' | 'hostile' | 'valid';
  passed: boolean;
}

export const summary = {
  counterRuns: [] as CounterRun[],
  faults: [] as FaultRecord[],
  badInputs: [] as BadInputRecord[],
  startedAt: Date.now(),
};

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => pad(c, widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)];
}

export function renderSummary(): string {
  const out: string[] = ['', '== ormlock stress summary =='];
  const runs = summary.counterRuns;
  if (runs.length) {
    out.push('', 'Lost updates (N processes × 16 connections, one barrier):');
    out.push(
      ...table(
        ['strategy', 'database', 'lock', 'operations', 'lost', 'failed', 'time'],
        runs.map((r) => [
          r.strategy,
          r.backend,
          r.locked ? 'yes' : 'control (none)',
          String(r.ops),
          String(r.lost),
          String(r.failed),
          `${r.seconds.toFixed(1)} s${r.note ? ` (${r.note})` : ''}`,
        ]),
      ),
    );
    const locked = runs.filter((r) => r.locked);
    const controls = runs.filter((r) => !r.locked);
    out.push(
      '',
      `Operations: ${runs.reduce((n, r) => n + r.ops, 0)} (${locked.reduce((n, r) => n + r.ops, 0)} locked, ${controls.reduce((n, r) => n + r.ops, 0)} in controls)`,
      `Lost updates with a lock: ${locked.reduce((n, r) => n + r.lost, 0)} in ${locked.length} runs; ` +
        `in the controls without a lock: ${controls.reduce((n, r) => n + r.lost, 0)} (every control lost some: ${controls.every((r) => r.lost > 0) ? 'yes' : 'NO'})`,
    );
  }
  if (summary.faults.length) {
    out.push('', `Faults injected: ${summary.faults.length}, survived: ${summary.faults.filter((f) => f.survived).length}`);
    for (const f of summary.faults) out.push(`  ${f.survived ? 'ok  ' : 'FAIL'} [${f.backend}] ${f.kind}: ${f.detail}`);
  }
  const bad = summary.badInputs;
  if (bad.length) {
    const of = (kind: BadInputRecord['kind']) => {
      const rows = bad.filter((b) => b.kind === kind);
      return `${rows.filter((b) => b.passed).length}/${rows.length}`;
    };
    const wrong = bad.filter((b) => !b.passed);
    out.push(
      '',
      `Bad inputs: ${bad.length} cases (${new Set(bad.map((b) => b.api)).size} APIs × ${[...new Set(bad.map((b) => b.backend))].join(', ')}):`,
      `  rejected with the expected error class and message: ${of('reject')}`,
      `  hostile keys / ids accepted, locking and released: ${of('hostile')}`,
      `  options valid only on some databases, accepted there: ${of('valid')}`,
      ...(wrong.length ? [`  WRONG: ${wrong.map((b) => `${b.api} [${b.backend}] ${b.input}`).join('; ')}`] : []),
    );
  }
  out.push('', `Wall time: ${((Date.now() - summary.startedAt) / 1000).toFixed(1)} s`, '');
  return out.join('\n');
}
