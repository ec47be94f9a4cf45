'use strict';
/**
 * The test runner.
 *
 *   node scripts/test-matrix.js [--shards=N] [--typecheck] [mocha args]      (`npm test`): every
 *       test file once, on the installed TypeORM (ORMLOCK_TYPEORM=<version> picks another one of
 *       the matrix), split into N mocha processes (default 2, one per core of the CI machine) that
 *       run at the same time; --typecheck: `tsc --noEmit` of the project beside them (a failure
 *       fails the run).
 *   node scripts/test-matrix.js --matrix [options] [mocha args]   (`npm run test:matrix`): the
 *       TypeORM-dependent files once per TypeORM version of the matrix, and the files that do not
 *       depend on TypeORM (MikroORM, Redis only, the packed package's consumers, the repository
 *       checks) once. Options: --versions=0.3.20,0.3.31 (default: all of MATRIX), --no-once (skip
 *       the TypeORM-independent files, e.g. after `npm test` ran them), --shards=N (split each run
 *       into N processes; default 1), --serial (one process after another), --private-from=K (every
 *       process gets private servers, numbered from K: the shared servers are left to an `npm test`
 *       running at the same time; CI does this).
 *
 * Processes that run at the same time must not share server-wide names: MariaDB's GET_LOCK names
 * and Redis keys are server-wide, and the test files name them without a per-run prefix
 * (PostgreSQL needs none: each test process has its own database). So the first process uses the
 * shared servers and every other one gets private ones (scripts/private-servers.js: a MariaDB of
 * the same version and three Redis nodes, its own port ranges for the servers tests start). Where
 * private servers cannot be started (no mariadbd, MYSQL_URL pointing elsewhere,
 * ORMLOCK_PRIVATE_SERVERS=0) the processes run one after another instead, as with --serial.
 *
 * The first process's output streams; the others' is buffered and printed whole when all ended.
 * At the end: the tests counted over all processes, the slowest files and every failed test. With
 * ORMLOCK_SUMMARY_FILE set, the failed processes and tests are also appended to that file (CI prints
 * it as its last lines). Exits non-zero if any process failed.
 */
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startPrivateServers, unavailable } = require('./private-servers');
const { failureLines } = require('./timing-reporter');

const ROOT = path.join(__dirname, '..');
const MATRIX = ['0.3.20', '0.3.31', 'default'];
/** Test files that do not depend on the TypeORM version: run once by the matrix. */
const ONCE = [
  /^test\/mikro-orm\//,
  /^test\/nestjs-mikro-orm\.test\.ts$/,
  /^test\/no-typeorm\.test\.ts$/,
  /^test\/redlock\.test\.ts$/,
  /^test\/deadlines\.test\.ts$/,
  /^test\/testing-helpers\.test\.ts$/,
  /^test\/package\.test\.ts$/,
  /^test\/quick-start\.test\.ts$/,
  /^test\/first-command\.test\.ts$/,
  /^test\/import-rule\.test\.ts$/,
  /^test\/no-cycles\.test\.ts$/,
  /^test\/docs\.test\.ts$/,
  /^test\/nestjs-exception-filter\.test\.ts$/,
  /^test\/patch-lifecycle\.test\.ts$/,
  /^test\/scheduled-lock-processes\.test\.ts$/,
];
/**
 * Seconds a file took in npm test in a recorded CI run (under CI's load; files of 4 s and more), to
 * balance the shards; a file not listed counts DEFAULT_SECONDS. Only the balance depends on these.
 * Refreshed from `CI=true ORMLOCK_TIMINGS_OUT=<file> bash .ci/run` (see recordTimings).
 */
const SECONDS = {
  'test/package.test.ts': 95,
  'test/mikro-orm/model-based.test.ts': 46,
  'test/scheduled-lock-processes.test.ts': 39,
  'test/model-based.test.ts': 30,
  'test/quick-start.test.ts': 26,
  'test/first-command.test.ts': 23,
  'test/lost-connection.test.ts': 21,
  'test/advisory.test.ts': 20,
  'test/nestjs.test.ts': 19,
  'test/row-locks.test.ts': 18,
  'test/coverage/mikro-orm-advisory.test.ts': 17,
  'test/coverage/typeorm-advisory.test.ts': 17,
  'test/redlock.test.ts': 15,
  'test/migrations.test.ts': 15,
  'test/mikro-orm/advisory.test.ts': 15,
  'test/locked-tree.test.ts': 15,
  'test/scheduled-nestjs-example.test.ts': 14,
  'test/coverage/mikro-orm-pessimistic.test.ts': 13,
  'test/coverage/typeorm-pessimistic.test.ts': 12,
  'test/installations.test.ts': 12,
  'test/redlock-database.test.ts': 10,
  'test/redis-semaphore.test.ts': 10,
  'test/inspect-locks.test.ts': 9,
  'test/around-create.test.ts': 9,
  'test/semaphore.test.ts': 8,
  'test/mikro-orm/demo.test.ts': 8,
  'test/nestjs-example.test.ts': 8,
  'test/compositions.test.ts': 8,
  'test/no-typeorm.test.ts': 8,
  'test/demo.test.ts': 7,
  'test/pgbouncer.test.ts': 7,
  'test/mikro-orm/pgbouncer.test.ts': 6,
  'test/coverage/mikro-orm-around-create.test.ts': 6,
  'test/mikro-orm/row-locks.test.ts': 6,
  'test/scheduled-lock.test.ts': 5,
  'test/coverage/pessimistic-joins.test.ts': 5,
  'test/nestjs-mikro-orm.test.ts': 5,
  'test/lost-connection-orm-scopes.test.ts': 5,
  'test/coverage/entity-schema.test.ts': 5,
  'test/pgbouncer-strategies.test.ts': 4,
  'test/mikro-orm/optimistic.test.ts': 4,
  'test/coverage/mikro-orm-upsert-match.test.ts': 4,
};
const DEFAULT_SECONDS = 3;
const mocha = path.join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');

/** The test files under `dir` (test/stress excluded), or only those ORMLOCK_TEST_ONLY (a regular expression) matches. */
function testFiles(dir = 'test') {
  const only = process.env.ORMLOCK_TEST_ONLY ? new RegExp(process.env.ORMLOCK_TEST_ONLY) : undefined;
  return allFiles(dir).filter((f) => !only || only.test(f));
}

function allFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== 'stress') out.push(...allFiles(rel));
    } else if (entry.name.endsWith('.test.ts')) out.push(rel);
  }
  return out.sort();
}

/**
 * Files that must run in the same process: they pack this checkout (test/support/packed.ts: dist/
 * removed, then `npm pack` builds it), once per process, and two processes would remove and build
 * the same dist/ at the same time.
 */
const TOGETHER = [['test/package.test.ts', 'test/quick-start.test.ts']];

/** `files` in `n` groups of about equal recorded time (the longest first into the lightest group; TOGETHER files as one); each group sorted. */
function shard(files, n) {
  const groups = Array.from({ length: Math.max(1, Math.min(n, files.length)) }, () => ({ files: [], seconds: 0 }));
  const weight = (f) => SECONDS[f] ?? DEFAULT_SECONDS;
  const units = TOGETHER.map((t) => t.filter((f) => files.includes(f))).filter((u) => u.length);
  for (const f of files) if (!units.some((u) => u.includes(f))) units.push([f]);
  const unitWeight = (u) => u.reduce((sum, f) => sum + weight(f), 0);
  for (const u of units.sort((a, b) => unitWeight(b) - unitWeight(a))) {
    const lightest = groups.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    lightest.files.push(...u);
    lightest.seconds += unitWeight(u);
  }
  return groups.filter((g) => g.files.length).map((g) => g.files.sort());
}

function label(version) {
  if (version !== 'default') return `typeorm ${version}`;
  return `typeorm ${require(path.join(ROOT, 'node_modules', 'typeorm', 'package.json')).version} (the dependency)`;
}

/** The environment of a run: ORMLOCK_TYPEORM only for a version other than the installed one. */
function envFor(version) {
  const env = { ...process.env };
  if (version && version !== 'default') env.ORMLOCK_TYPEORM = version;
  else delete env.ORMLOCK_TYPEORM;
  return env;
}

/** Splits `--name=value` options (and flags) off the mocha arguments. */
function options(argv, known) {
  const opts = {};
  const rest = [];
  for (const a of argv) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(a);
    if (m && known.includes(m[1])) opts[m[1]] = m[2] ?? true;
    else rest.push(a);
  }
  return { opts, rest };
}

/**
 * Runs the processes (each { name, version, files }), at the same time when allowed and private
 * servers can be had, else one after another. Resolves each one's { name, ok, status, seconds, timings }.
 */
async function runAll(procs, args, { serial, privateFrom }) {
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ormlock-timings-'));
  // privateFrom: every process gets private servers (numbered from there), the shared ones are left to another runner
  const first = privateFrom === undefined ? 1 : 0;
  let why = privateFrom !== undefined ? await unavailable() : serial ? '--serial' : procs.length > 1 ? await unavailable() : undefined;
  if (why && privateFrom !== undefined) throw new Error(`--private-from: private servers cannot be had (${why})`);
  if (why && procs.length > 1) console.log(`=== one process after another (${why})`);
  const servers = [];
  if (!why) {
    try {
      for (let i = first; i < procs.length; i++) servers[i] = await startWithRetry((privateFrom ?? 0) + i);
    } catch (error) {
      await Promise.all(servers.filter(Boolean).map((srv) => srv.stop()));
      servers.length = 0;
      if (privateFrom !== undefined) throw error;
      why = `private servers did not start: ${error.message}`;
      console.log(`=== one process after another (${why})`);
    }
  }
  console.log(
    `=== ${procs.length} test process${procs.length > 1 ? 'es' : ''}${why || procs.length === 1 ? '' : first === 0 ? ' at once (each with its own MariaDB and Redis)' : ' at once (each after the first with its own MariaDB and Redis)'}`,
  );
  for (const p of procs) console.log(`  - ${p.name}: ${p.files.length} files`);
  const start = (p, i) =>
    new Promise((resolve) => {
      const timingsFile = path.join(tmp, `${i}.json`);
      const env = { ...envFor(p.version), ...(servers[i]?.env ?? {}), ORMLOCK_TIMINGS_FILE: timingsFile };
      const live = (i === 0 && first === 1) || !!why;
      const child = spawn(process.execPath, [mocha, ...args, ...p.files], {
        env,
        cwd: ROOT,
        stdio: ['ignore', live ? 'inherit' : 'pipe', live ? 'inherit' : 'pipe'],
      });
      const chunks = [];
      if (!live) {
        child.stdout.on('data', (d) => chunks.push(d));
        child.stderr.on('data', (d) => chunks.push(d));
      }
      if (live) console.log(`\n=== ${p.name}\n`);
      child.on('close', (code, signal) => {
        const seconds = Math.round((Date.now() - started) / 1000);
        let timings;
        try {
          timings = JSON.parse(fs.readFileSync(timingsFile, 'utf8'));
        } catch {
          timings = undefined;
        }
        resolve({ name: p.name, ok: code === 0, status: code ?? signal, seconds, timings, output: live ? undefined : Buffer.concat(chunks) });
      });
    });
  let done;
  try {
    if (why) {
      done = [];
      for (const [i, p] of procs.entries()) done.push(await start(p, i));
    } else done = await Promise.all(procs.map(start));
  } finally {
    await Promise.all(servers.filter(Boolean).map((s) => s.stop()));
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  for (const r of done) {
    if (!r.output) continue;
    process.stdout.write(`\n=== ${r.name} (ended at ${r.seconds} s)\n\n`);
    process.stdout.write(r.output);
  }
  summary(done, Math.round((Date.now() - started) / 1000));
  return done;
}

/** Private servers of run `index`; a second try after a failed start (a loaded machine, a port taken meanwhile). */
async function startWithRetry(index) {
  try {
    return await startPrivateServers(index);
  } catch (error) {
    console.log(`=== private servers ${index} did not start (${error.message}); trying again`);
    return startPrivateServers(index);
  }
}

/** The counts over all processes, the slowest files, one line per process. */
function summary(done, wall) {
  const total = { passes: 0, failures: 0, pending: 0 };
  const files = [];
  for (const r of done) {
    if (!r.timings) continue;
    for (const k of Object.keys(total)) total[k] += r.timings.stats[k] ?? 0;
    for (const [file, ms] of r.timings.files) files.push({ file, ms, proc: r.name });
  }
  files.sort((a, b) => b.ms - a.ms);
  console.log(
    `\n=== ${done.length > 1 ? 'all processes' : 'the run'}: ${total.passes} passing, ${total.failures} failing, ${total.pending} pending; ${wall} s wall`,
  );
  console.log(`  the ${Math.min(10, files.length)} slowest of ${files.length} files:`);
  for (const f of files.slice(0, 10))
    console.log(`    ${String(Math.round(f.ms / 100) / 10).padStart(6)} s  ${f.file}${done.length > 1 ? `  (${f.proc})` : ''}`);
  for (const r of done) {
    console.log(
      `${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (ended at ${r.seconds} s${r.ok ? '' : `, exit ${r.status}`}${r.timings ? '' : ', no timings: the reporter did not finish'})`,
    );
    for (const f of r.timings?.failed ?? []) console.log(failureLines(f, '       ').join('\n'));
  }
  const out = process.env.ORMLOCK_SUMMARY_FILE;
  if (out) fs.appendFileSync(out, summaryLines(done).join('\n') + '\n');
  recordTimings(done);
}

/**
 * With ORMLOCK_TIMINGS_OUT=<file>: every file's seconds, per process, merged into that JSON file
 * (`{ "<process>": { "<file>": seconds } }`; several runners may share it), to refresh SECONDS
 * from a CI run.
 */
function recordTimings(done) {
  const out = process.env.ORMLOCK_TIMINGS_OUT;
  if (!out) return;
  let all = {};
  try {
    all = JSON.parse(fs.readFileSync(out, 'utf8'));
  } catch {
    all = {};
  }
  for (const r of done) if (r.timings) all[r.name] = Object.fromEntries(r.timings.files.map(([file, ms]) => [file, Math.round(ms / 100) / 10]));
  fs.writeFileSync(out, JSON.stringify(all, null, 1) + '\n');
}

/** One line per process that failed and per failed test, for a runner that prints them again at its very end (.ci/run). */
function summaryLines(done) {
  const lines = [];
  for (const r of done) {
    if (r.ok) continue;
    lines.push(`FAIL ${r.name} (exit ${r.status}${r.timings ? '' : ', no timings: the reporter did not finish'})`);
    for (const f of r.timings?.failed ?? []) lines.push(...failureLines(f, '  '));
  }
  return lines;
}

/**
 * `tsc -p tsconfig.json --noEmit` (`npm run typecheck`) in a process of its own, started with the
 * test processes rather than before them (mocha transpiles without type-checking, so neither waits
 * for the other). Resolves { ok, report }: the lines to print once the tests' output is done.
 */
function typeCheck() {
  const started = Date.now();
  const child = spawn(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json', '--noEmit'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks = [];
  child.stdout.on('data', (d) => chunks.push(d));
  child.stderr.on('data', (d) => chunks.push(d));
  return new Promise((resolve) => {
    child.on('close', (code) => {
      const seconds = Math.round((Date.now() - started) / 1000);
      if (code === 0) resolve({ ok: true, report: `ok   type-check (tsc --noEmit, ended after ${seconds} s)` });
      else {
        const out = process.env.ORMLOCK_SUMMARY_FILE;
        if (out) fs.appendFileSync(out, `FAIL type-check (tsc -p tsconfig.json --noEmit)\n${Buffer.concat(chunks)}`);
        resolve({ ok: false, report: `FAIL type-check (tsc --noEmit, exit ${code} after ${seconds} s):\n${Buffer.concat(chunks)}` });
      }
    });
  });
}

async function once(argv) {
  const { opts, rest } = options(argv, ['shards', 'serial', 'typecheck']);
  const version = process.env.ORMLOCK_TYPEORM || 'default';
  const groups = shard(testFiles(), Number(opts.shards ?? process.env.ORMLOCK_TEST_SHARDS ?? 2));
  const typed = opts.typecheck ? typeCheck() : Promise.resolve({ ok: true, report: '' });
  console.log(`\n=== npm test on ${label(version)}`);
  const procs = groups.map((files, i) => ({
    name: groups.length > 1 ? `${label(version)}, part ${i + 1} of ${groups.length}` : label(version),
    version,
    files,
  }));
  const done = await runAll(procs, rest, { serial: !!opts.serial });
  const types = await typed;
  if (types.report) console.log(types.report);
  process.exit(types.ok && done.every((r) => r.ok) ? 0 : 1);
}

async function matrix(argv) {
  const { opts, rest } = options(argv, ['versions', 'no-once', 'serial', 'shards', 'private-from']);
  const versions = typeof opts.versions === 'string' ? opts.versions.split(',').filter(Boolean) : MATRIX;
  const files = testFiles();
  const independent = files.filter((f) => ONCE.some((re) => re.test(f)));
  const dependent = files.filter((f) => !independent.includes(f));
  const shards = Number(opts.shards ?? 1);
  const procs = [];
  const split = (name, version, list) => {
    const groups = shard(list, shards);
    groups.forEach((g, i) => procs.push({ name: groups.length > 1 ? `${name}, part ${i + 1} of ${groups.length}` : name, version, files: g }));
  };
  for (const v of versions) split(`${label(v)}: the TypeORM-dependent files`, v, dependent);
  if (!opts['no-once']) split(`${label('default')}: the TypeORM-independent files`, 'default', independent);
  console.log(`=== test matrix`);
  const privateFrom = opts['private-from'] === undefined ? undefined : Number(opts['private-from']);
  const done = await runAll(procs, rest, { serial: !!opts.serial, privateFrom });
  process.exit(done.every((r) => r.ok) ? 0 : 1);
}

// Ctrl-C or a CI timeout: exit, so the 'exit' handlers stop the private servers.
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130));

const argv = process.argv.slice(2);
(argv[0] === '--matrix' ? matrix(argv.slice(1)) : once(argv)).catch((error) => {
  console.error(error);
  if (process.env.ORMLOCK_SUMMARY_FILE) fs.appendFileSync(process.env.ORMLOCK_SUMMARY_FILE, `FAIL ${argv.join(' ')}: ${error?.message ?? error}\n`);
  process.exit(1);
});
