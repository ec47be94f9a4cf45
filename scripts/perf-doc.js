'use strict';
/**
 * Writes the figures of docs/performance.md from a bench run, between the markers
 * `<!-- perf:begin -->` and `<!-- perf:end -->`: figures are generated, never copied by hand.
 *
 *   node scripts/perf-doc.js [results.json]   (`npm run perf:doc`): records the run `npm run bench`
 *       wrote (bench/results.json, not committed) as docs/performance-run.json (committed), then
 *       renders the page from the recorded run.
 *   node scripts/perf-doc.js --check          the page is what the recorded run gives (exit 1 if not).
 *
 * The page and the test that checks it depend only on committed files, so a local bench run
 * changes nothing until it is recorded.
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

/** The committed record of the run the page shows. */
const RECORDED = path.join(ROOT, 'docs', 'performance-run.json');
const PAGE = path.join(ROOT, 'docs', 'performance.md');

/** The recorded run, or undefined when none is recorded. */
function recorded() {
  return fs.existsSync(RECORDED) ? JSON.parse(fs.readFileSync(RECORDED, 'utf8')) : undefined;
}

function main(argv) {
  const page = fs.readFileSync(PAGE, 'utf8');
  if (argv.includes('--check')) {
    if (render(page, recorded()) !== page) {
      console.error('perf-doc: docs/performance.md is not what docs/performance-run.json gives: run npm run perf:doc');
      return 1;
    }
    return 0;
  }
  const [resultsFile = path.join(ROOT, 'bench', 'results.json')] = argv;
  if (fs.existsSync(resultsFile)) {
    const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'));
    if (results.quick) {
      console.error(`perf-doc: ${path.relative(ROOT, resultsFile)} is a quick run (budgets only, its times mean nothing): run the full npm run bench`);
      return 1;
    }
    fs.writeFileSync(RECORDED, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`perf-doc: recorded ${path.relative(ROOT, resultsFile)} as ${path.relative(ROOT, RECORDED)}`);
  }
  fs.writeFileSync(PAGE, render(page, recorded()));
  console.log(
    `perf-doc: wrote the figures of ${path.relative(ROOT, PAGE)} from ${fs.existsSync(RECORDED) ? path.relative(ROOT, RECORDED) : 'no recorded run'}`,
  );
  return 0;
}

module.exports = { render, block, recorded, BEGIN, END };
if (require.main === module) process.exit(main(process.argv.slice(2)));
