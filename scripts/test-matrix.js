'use strict';
/**
 * `npm test`: the whole mocha suite once per TypeORM version of the matrix (0.3.20, the latest
 * 0.3, the latest 1.x), each against PostgreSQL, MariaDB and Redis. ORMLOCK_TYPEORM=<version>
 * runs only that one. Exits non-zero if any run failed.
 */
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const MATRIX = ['0.3.20', '0.3.31', 'default'];
const versions = process.env.ORMLOCK_TYPEORM ? [process.env.ORMLOCK_TYPEORM] : MATRIX;
const mocha = path.join(__dirname, '..', 'node_modules', 'mocha', 'bin', 'mocha.js');
const results = [];
for (const version of versions) {
  const label = version === 'default' ? `typeorm ${require(path.join(__dirname, '..', 'node_modules', 'typeorm', 'package.json')).version} (the dependency)` : `typeorm ${version}`;
  console.log(`\n=== npm test on ${label}\n`);
  const started = Date.now();
  const run = spawnSync(process.execPath, [mocha, ...process.argv.slice(2), 'test/**/*.test.ts'], {
    stdio: 'inherit',
    env: { ...process.env, ORMLOCK_TYPEORM: version },
    cwd: path.join(__dirname, '..'),
  });
  results.push({ label, status: run.status ?? 1, seconds: Math.round((Date.now() - started) / 1000) });
}
console.log('\n=== TypeORM matrix');
for (const r of results) console.log(`${r.status === 0 ? 'ok  ' : 'FAIL'} ${r.label} (${r.seconds} s)`);
process.exit(results.every((r) => r.status === 0) ? 0 : 1);
