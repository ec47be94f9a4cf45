'use strict';
/**
 * The test runner.
 *
 *   node scripts/test-matrix.js [mocha args]        (`npm test`): every test file once, on the
 *       installed TypeORM (ORMLOCK_TYPEORM=<version> picks another one of the matrix).
 *   node scripts/test-matrix.js --matrix [options] [mocha args]   (`npm run test:matrix`): the
 *       TypeORM-dependent files once per TypeORM version of the matrix, and the files that do not
 *       depend on TypeORM (MikroORM, Redis only, the packed package's consumers, the repository
 *       checks) once. The runs are separate processes started at the same time (each test
 *       process has its own databases); each run's output is buffered and printed whole when it
 *       ends. Options: --versions=0.3.20,0.3.31 (default: all of MATRIX), --no-once (skip the
 *       TypeORM-independent files, e.g. after `npm test` ran them), --serial (one run after
 *       another: names that are server-wide — MariaDB's GET_LOCK names, Redis keys, PgBouncer's
 *       port — are then never shared by two runs; CI uses it).
 *
 * Exits non-zero if any run failed.
 */
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const MATRIX = ['0.3.20', '0.3.31', 'default'];
/** Test files that do not depend on the TypeORM version: run once by the matrix. */
const ONCE = [
  /^test\/mikro-orm\//,
  /^test\/nestjs-mikro-orm\.test\.ts$/,
  /^test\/no-typeorm\.test\.ts$/,
  /^test\/redlock\.test\.ts$/,
  /^test\/deadlines\.test\.ts$/,
  /^test\/package\.test\.ts$/,
  /^test\/quick-start\.test\.ts$/,
  /^test\/first-command\.test\.ts$/,
  /^test\/import-rule\.test\.ts$/,
  /^test\/no-cycles\.test\.ts$/,
  /^test\/docs\.test\.ts$/,
  /^test\/nestjs-exception-filter\.test\.ts$/,
];
const mocha = path.join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');

function testFiles(dir = 'test') {
  const out = [];
  for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== 'stress') out.push(...testFiles(rel));
    } else if (entry.name.endsWith('.test.ts')) out.push(rel);
  }
  return out.sort();
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

function once(args) {
  const version = process.env.ORMLOCK_TYPEORM || 'default';
  console.log(`\n=== npm test on ${label(version)}\n`);
  const started = Date.now();
  const run = spawnSync(process.execPath, [mocha, ...args, ...testFiles()], { stdio: 'inherit', env: envFor(version), cwd: ROOT });
  console.log(`\n=== ${run.status === 0 ? 'ok' : 'FAIL'}: ${label(version)} in ${Math.round((Date.now() - started) / 1000)} s`);
  process.exit(run.status ?? 1);
}

function matrix(argv) {
  let versions = MATRIX;
  let withOnce = true;
  let serial = false;
  const args = [];
  for (const a of argv) {
    if (a.startsWith('--versions=')) versions = a.slice('--versions='.length).split(',').filter(Boolean);
    else if (a === '--no-once') withOnce = false;
    else if (a === '--serial') serial = true;
    else args.push(a);
  }
  const files = testFiles();
  const independent = files.filter((f) => ONCE.some((re) => re.test(f)));
  const dependent = files.filter((f) => !independent.includes(f));
  const runs = versions.map((v) => ({ name: `${label(v)}: ${dependent.length} TypeORM-dependent files`, version: v, files: dependent }));
  if (withOnce) runs.push({ name: `${label('default')}: ${independent.length} TypeORM-independent files`, version: 'default', files: independent });
  const started = Date.now();
  console.log(`=== test matrix: ${runs.length} runs ${serial ? 'one after another' : 'at once'}\n${runs.map((r) => `  - ${r.name}`).join('\n')}`);
  const start = (r) =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [mocha, ...args, ...r.files], { env: envFor(r.version), cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      const chunks = [];
      child.stdout.on('data', (d) => chunks.push(d));
      child.stderr.on('data', (d) => chunks.push(d));
      child.on('close', (code, signal) => {
        const seconds = Math.round((Date.now() - started) / 1000);
        process.stdout.write(`\n=== ${r.name} (${seconds} s)\n`);
        process.stdout.write(Buffer.concat(chunks));
        resolve({ name: r.name, ok: code === 0, status: code ?? signal, seconds });
      });
    });
  const all = serial ? runs.reduce((prev, r) => prev.then(async (done) => [...done, await start(r)]), Promise.resolve([])) : Promise.all(runs.map(start));
  all.then((done) => {
    console.log(`\n=== test matrix (${Math.round((Date.now() - started) / 1000)} s wall)`);
    for (const r of done) console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (${r.seconds} s${r.ok ? '' : `, exit ${r.status}`})`);
    process.exit(done.every((r) => r.ok) ? 0 : 1);
  });
}

const argv = process.argv.slice(2);
if (argv[0] === '--matrix') matrix(argv.slice(1));
else once(argv);
