#!/usr/bin/env node
'use strict';
// The `ormlock` command. Runs the built CLI (dist/), or, in a checkout without a build
// (or with ORMLOCK_CLI_FROM_SOURCE=1), the TypeScript source through ts-node.
const path = require('node:path');
const fs = require('node:fs');

const built = path.join(__dirname, '..', 'dist', 'src', 'observe', 'cli.js');
let cli;
if (fs.existsSync(built) && process.env.ORMLOCK_CLI_FROM_SOURCE !== '1') {
  cli = require(built);
} else {
  try {
    require('ts-node').register({ transpileOnly: true, project: path.join(__dirname, '..', 'tsconfig.json') });
  } catch {
    process.stderr.write('ormlock: no build found (dist/) and ts-node is not installed: run `npm run build`\n');
    process.exit(1);
  }
  cli = require(path.join(__dirname, '..', 'src', 'observe', 'cli.ts'));
}
cli.main(process.argv.slice(2)).then((code) => process.exit(code));
