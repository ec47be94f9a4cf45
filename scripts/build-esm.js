#!/usr/bin/env node
/**
 * Writes the ESM entry points next to the CommonJS build: each re-exports the CommonJS
 * module's named exports, so `import { lock } from 'ormlock'` and `require('ormlock')`
 * share one module instance (one AsyncLocalStorage, one registry).
 *
 * The entry points are package.json's "exports": every subpath with an "import" target
 * (./dist/esm/<name>.mjs) gets a file re-exporting its "require" target. Adding a subpath is
 * one "exports" entry plus its "typesVersions" line (see docs/install.md).
 */
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const { exports: exportsMap } = require(path.join(root, 'package.json'));
for (const [subpath, target] of Object.entries(exportsMap)) {
  if (typeof target !== 'object' || !target.import) continue;
  if (!target.require) throw new Error(`package.json exports["${subpath}"]: an "import" target needs the "require" target it re-exports`);
  const esmFile = path.join(root, target.import);
  const cjsFile = path.join(root, target.require);
  const names = Object.keys(require(cjsFile)).filter((n) => n !== 'default' && n !== '__esModule');
  let cjs = path.relative(path.dirname(esmFile), cjsFile).split(path.sep).join('/');
  if (!cjs.startsWith('.')) cjs = `./${cjs}`;
  const body = [`import cjs from '${cjs}';`, ...names.map((n) => `export const ${n} = cjs.${n};`), 'export default cjs;', ''].join('\n');
  fs.mkdirSync(path.dirname(esmFile), { recursive: true });
  fs.writeFileSync(esmFile, body);
}
