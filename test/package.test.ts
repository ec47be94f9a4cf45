import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.join(__dirname, '..');
const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });

describe('the built package', function () {
  this.timeout(120_000);

  before(() => {
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'pipe' });
  });

  it('emits JavaScript and .d.ts for both entry points', () => {
    for (const f of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/testing/index.js', 'dist/src/testing/index.d.ts', 'dist/esm/index.mjs', 'dist/esm/testing.mjs']) {
      expect(fs.existsSync(path.join(root, f)), f).to.equal(true);
    }
  });

  it('can be required (CommonJS) by its name, with the contract names', () => {
    const out = node(['-e', `
      const m = require('ormlock'); const t = require('ormlock/testing');
      const names = ['installLocking','transaction','Transactional','currentManager','Current','defineCurrent','lock','withLock','Pessimistic',
        'Versioned','RetryOnConflict','createOrFind','AdvisoryLock','withAdvisoryLock','advisoryLockExists','AroundCreate','lockParent',
        'Redlock','DistributedLock',
        'LockError','LockTimeoutError','LockNotAvailableError','DeadlockError','StaleEntityError','TransactionRequiredError','LockConfigError','LockLostError'];
      const missing = names.filter((n) => typeof m[n] === 'undefined');
      console.log(JSON.stringify({ missing, race: typeof t.race, err: new m.LockTimeoutError('x') instanceof m.LockError }));
    `]);
    expect(JSON.parse(out)).to.deep.equal({ missing: [], race: 'function', err: true });
  });

  it('can be imported (ESM) by its name and shares the CommonJS instance', () => {
    const out = node(['--input-type=module', '-e', `
      import { installLocking, LockError, Current } from 'ormlock';
      import { race } from 'ormlock/testing';
      import { createRequire } from 'node:module';
      const cjs = createRequire(import.meta.url)('ormlock');
      console.log(JSON.stringify({ fn: typeof installLocking, race: typeof race, same: cjs.LockError === LockError && cjs.Current === Current }));
    `]);
    expect(JSON.parse(out)).to.deep.equal({ fn: 'function', race: 'function', same: true });
  });
});
