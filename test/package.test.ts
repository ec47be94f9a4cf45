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
        'Redlock','DistributedLock','inspectLocks',
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

  it('ormlock/opentelemetry loads by its name (CommonJS and ESM), and the ormlock command runs from the build', () => {
    const out = node(['--input-type=module', '-e', `
      import { openTelemetry } from 'ormlock/opentelemetry';
      import { createRequire } from 'node:module';
      const cjs = createRequire(import.meta.url)('ormlock/opentelemetry');
      const o = openTelemetry();
      o.onLockEvent({ type: 'acquired', kind: 'row', target: 'x', waitedMs: 1 });
      console.log(JSON.stringify({ fn: typeof openTelemetry, same: cjs.openTelemetry === openTelemetry, observer: typeof o.onLockEvent }));
    `]);
    expect(JSON.parse(out)).to.deep.equal({ fn: 'function', same: true, observer: 'function' });
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(pkg.bin).to.deep.equal({ ormlock: 'bin/ormlock.js' });
    let usage = '';
    try {
      execFileSync(process.execPath, [path.join(root, pkg.bin.ormlock)], { cwd: root, encoding: 'utf8', stdio: 'pipe', env: { ...process.env, ORMLOCK_CLI_FROM_SOURCE: '' } });
    } catch (error) {
      usage = String((error as { stderr?: string }).stderr);
      expect((error as { status?: number }).status).to.equal(2);
    }
    expect(usage).to.match(/usage: ormlock locks --url/);
  });
});
