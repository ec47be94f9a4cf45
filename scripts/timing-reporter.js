'use strict';
/**
 * mocha's spec reporter, plus the wall time of each test file at the end of the run (the slowest
 * first), so a slow `npm test` shows where its time goes. Time is counted from a file's first
 * top-level suite's start to its last one's end, hooks included. With ORMLOCK_TIMINGS_FILE set,
 * every file's time, the run's counts and the failed tests (title, file, first line of the error)
 * are also written there as JSON (scripts/test-matrix.js adds up the processes of one `npm test`
 * that way, and lists the failures again at its end).
 */
const Mocha = require('mocha');
const fs = require('node:fs');
const path = require('node:path');

const { EVENT_SUITE_BEGIN, EVENT_SUITE_END, EVENT_RUN_END, EVENT_TEST_FAIL } = Mocha.Runner.constants;
const SHOWN = 15;

class TimingReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const files = new Map();
    const failed = [];
    runner.on(EVENT_TEST_FAIL, (test, error) => {
      const message = String(error?.message ?? error)
        .split('\n')[0]
        .slice(0, 300);
      failed.push({ title: test.fullTitle(), file: test.file ? path.relative(process.cwd(), test.file) : undefined, message });
    });
    runner.on(EVENT_SUITE_BEGIN, (suite) => {
      if (!suite.file || suite.parent?.file) return;
      const t = files.get(suite.file) ?? { ms: 0 };
      t.started = Date.now();
      files.set(suite.file, t);
    });
    runner.on(EVENT_SUITE_END, (suite) => {
      const t = suite.file && !suite.parent?.file ? files.get(suite.file) : undefined;
      if (t?.started) t.ms += Date.now() - t.started;
    });
    runner.once(EVENT_RUN_END, () => {
      const rows = [...files].sort((a, b) => b[1].ms - a[1].ms);
      const total = rows.reduce((n, [, t]) => n + t.ms, 0);
      console.log(`\n  time per file (${rows.length} files, ${Math.round(total / 1000)} s; the ${Math.min(SHOWN, rows.length)} slowest):`);
      for (const [file, t] of rows.slice(0, SHOWN))
        console.log(`    ${String(Math.round(t.ms / 100) / 10).padStart(6)} s  ${path.relative(process.cwd(), file)}`);
      const summary = process.env.ORMLOCK_SUMMARY_FILE;
      if (summary && !process.env.ORMLOCK_TIMINGS_FILE && failed.length)
        // run by mocha itself (not by scripts/test-matrix.js, which reports its processes' failures)
        fs.appendFileSync(summary, failed.map((f) => failureLines(f, '  ').join('\n') + '\n').join(''));
      const out = process.env.ORMLOCK_TIMINGS_FILE;
      if (out) {
        const { passes, failures, pending, tests } = this.stats;
        const files = rows.map(([file, t]) => [path.relative(process.cwd(), file), t.ms]);
        fs.writeFileSync(out, JSON.stringify({ stats: { passes, failures, pending, tests }, files, failed }));
      }
    });
  }
}

/** A failed test as two lines (its title and file, then the first line of its error), indented by `indent`. */
function failureLines(f, indent) {
  return [`${indent}failed: ${f.title}${f.file ? ` (${f.file})` : ''}`, `${indent}  ${f.message}`];
}

module.exports = TimingReporter;
module.exports.failureLines = failureLines;
