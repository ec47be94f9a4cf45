'use strict';
/**
 * Writes the figures of docs/performance.md from bench/results.json (what `npm run bench`
 * writes), between the markers `<!-- perf:begin -->` and `<!-- perf:end -->`: figures are
 * generated, never copied by hand. `node scripts/perf-doc.js [results.json] [page.md]`;
 * `--check` exits 1 when the page is not what the results give (nothing written).
 */
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const BEGIN = '<!-- perf:begin -->';
const END = '<!-- perf:end -->';

/** The generated block for a results object (or for none). */
function block(results) {
  if (!results) {
    return ['_No full run recorded in this checkout: run `npm run bench` (it writes `bench/results.json`), then `npm run perf:doc`._'].join('\n');
  }
  const lines = [
    `Run of ${results.startedAt} — Node ${results.node}, ${results.cpus} CPUs${results.quick ? ' — QUICK (budgets only; its times mean nothing)' : ''}, pool ${results.poolSize}, ${results.rows} rows.`,
    '',
    results.budgetFailures && results.budgetFailures.length
      ? `**Round-trip budgets exceeded:** ${results.budgetFailures.join('; ')}`
      : 'Every round-trip budget held (a lock at most one statement over the unlocked work, a decorator none).',
    '',
    '```text',
    String(results.table ?? '').trimEnd(),
    '```',
  ];
  return lines.join('\n');
}

function render(page, results) {
  const start = page.indexOf(BEGIN);
  const end = page.indexOf(END);
  if (start < 0 || end < start) throw new Error(`perf-doc: the page has no ${BEGIN} … ${END} markers`);
  return `${page.slice(0, start + BEGIN.length)}\n${block(results)}\n${page.slice(end)}`;
}

function main(argv) {
  const check = argv.includes('--check');
  const [resultsFile = path.join(ROOT, 'bench', 'results.json'), pageFile = path.join(ROOT, 'docs', 'performance.md')] = argv.filter((a) => a !== '--check');
  const results = fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : undefined;
  const page = fs.readFileSync(pageFile, 'utf8');
  const next = render(page, results);
  if (check) {
    if (next !== page) {
      console.error(`perf-doc: ${path.relative(ROOT, pageFile)} is not what ${path.relative(ROOT, resultsFile)} gives: run npm run perf:doc`);
      return 1;
    }
    return 0;
  }
  fs.writeFileSync(pageFile, next);
  console.log(
    `perf-doc: wrote the figures of ${path.relative(ROOT, pageFile)} from ${results ? path.relative(ROOT, resultsFile) : 'no results (none recorded)'}`,
  );
  return 0;
}

module.exports = { render, block, BEGIN, END };
if (require.main === module) process.exit(main(process.argv.slice(2)));
