#!/usr/bin/env node
/**
 * Writes the ESM entry points next to the CommonJS build: each re-exports the CommonJS
 * module's named exports, so `import { lock } from 'ormlock'` and `require('ormlock')`
 * share one module instance (one AsyncLocalStorage, one registry).
 */
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const entries = {
  'index.mjs': '../src/index.js',
  'testing.mjs': '../src/testing/index.js',
  'opentelemetry.mjs': '../src/observe/opentelemetry.js',
};
fs.mkdirSync(path.join(root, 'dist/esm'), { recursive: true });
for (const [file, cjs] of Object.entries(entries)) {
  const names = Object.keys(require(path.join(root, 'dist/esm', cjs))).filter((n) => n !== 'default' && n !== '__esModule');
  const body = [
    `import cjs from '${cjs}';`,
    ...names.map((n) => `export const ${n} = cjs.${n};`),
    'export default cjs;',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(root, 'dist/esm', file), body);
}
