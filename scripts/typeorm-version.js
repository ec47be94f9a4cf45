'use strict';
/**
 * Runs the process on another TypeORM: ORMLOCK_TYPEORM=0.3.20 loads the npm alias `typeorm-0.3.20`
 * (a devDependency, `npm:typeorm@0.3.20`) wherever `typeorm` or `typeorm/...` is required — by
 * ormlock, the tests, the fixtures and every package that requires TypeORM. Child processes get
 * the same through NODE_OPTIONS. Unset (or `default`): the `typeorm` dependency itself.
 */
const Module = require('node:module');
const path = require('node:path');

const version = process.env.ORMLOCK_TYPEORM;
if (version && version !== 'default' && !Module._ormlockTypeorm) {
  const alias = `typeorm-${version}`;
  try {
    require.resolve(alias, { paths: [path.join(__dirname, '..')] });
  } catch {
    console.error(`ORMLOCK_TYPEORM=${version}: the package '${alias}' is not installed (devDependencies name the versions of the matrix: see package.json).`);
    process.exit(2);
  }
  Module._ormlockTypeorm = alias;
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    if (request === 'typeorm' || request.startsWith('typeorm/')) request = alias + request.slice('typeorm'.length);
    return resolve.call(this, request, ...rest);
  };
  const flag = `--require ${JSON.stringify(__filename)}`;
  if (!(process.env.NODE_OPTIONS ?? '').includes(__filename)) process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${flag}`.trim();
}
