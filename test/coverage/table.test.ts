import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

/** docs/coverage.md is generated from the tests' coverage tags: it fails here when it is out of date. */
describe('coverage: the table in docs/coverage.md', () => {
  it('matches the coverage tags of the tests (run `node scripts/coverage-table.js` to regenerate it)', () => {
    const root = path.join(__dirname, '..', '..');
    const run = spawnSync(process.execPath, [path.join(root, 'scripts', 'coverage-table.js'), '--check'], { cwd: root, encoding: 'utf8' });
    expect(run.status, run.stderr).to.equal(0);
  });
});
