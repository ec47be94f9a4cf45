'use strict';
/**
 * Runs the process on another NestJS: ORMLOCK_NEST=12 loads `@nestjs/*` from compat/nest-12
 * (its own package.json and lock, installed with `npm ci --prefix compat/nest-12`) wherever
 * `@nestjs/...` is required — by ormlock/nestjs, the tests and their fixtures. The Nest 12
 * packages themselves are ES modules under compat/nest-12/node_modules: their own imports of
 * `@nestjs/*` find each other there, and their peers (typeorm, rxjs, reflect-metadata) the project
 * root's, so one copy of each is loaded. Child processes get the same through NODE_OPTIONS.
 * Unset (or `default`, or 11): the root's devDependencies (Nest 11).
 *
 *   npm run test:nest12      # installs compat/nest-12, then the Nest tests on Nest 12
 */
const Module = require('node:module');
const fs = require('node:fs');
const path = require('node:path');

const version = process.env.ORMLOCK_NEST;
if (version && version !== 'default' && version !== '11' && !Module._ormlockNest) {
  const dir = path.join(__dirname, '..', 'compat', `nest-${version}`);
  if (!fs.existsSync(path.join(dir, 'package.json'))) {
    console.error(`ORMLOCK_NEST=${version}: there is no compat/nest-${version}/package.json (the Nest versions of the matrix live in compat/).`);
    process.exit(2);
  }
  if (!fs.existsSync(path.join(dir, 'node_modules', '@nestjs', 'core', 'package.json'))) {
    console.error(`ORMLOCK_NEST=${version}: compat/nest-${version} is not installed: run \`npm ci --prefix compat/nest-${version}\` first.`);
    process.exit(2);
  }
  Module._ormlockNest = version;
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, parent, isMain, options) {
    if (typeof request === 'string' && request.startsWith('@nestjs/')) {
      try {
        return resolve.call(this, request, parent, isMain, { ...options, paths: [dir] });
      } catch {
        // not one of the versioned packages: the root's
      }
    }
    return resolve.call(this, request, parent, isMain, options);
  };
  const flag = `--require ${JSON.stringify(__filename)}`;
  if (!(process.env.NODE_OPTIONS ?? '').includes(__filename)) process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${flag}`.trim();
}
