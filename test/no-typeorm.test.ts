import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';

/**
 * A MikroORM application has no TypeORM installed: `ormlock` (decorators, strategies, errors) and
 * `ormlock/mikro-orm` must load without it. The child process refuses every `typeorm` require.
 */
describe('loading without TypeORM', () => {
  const refuse = `
    const Module = require('module');
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, parent, ...rest) {
      if (request === 'typeorm' || request.startsWith('typeorm/')) throw new Error('typeorm required by ' + (parent && parent.filename));
      return resolve.call(this, request, parent, ...rest);
    };`;
  for (const entry of ['src/index.ts', 'src/orm/mikro-orm/index.ts', 'src/nestjs/index.ts']) {
    it(`${entry} loads with every require('typeorm') refused`, function () {
      this.timeout(60_000);
      const root = path.join(__dirname, '..');
      const run = spawnSync(
        process.execPath,
        [
          '-r',
          'ts-node/register/transpile-only',
          '-e',
          `${refuse}\nconst m = require(${JSON.stringify(path.join(root, entry))}); console.log(Object.keys(m).length);`,
        ],
        { cwd: root, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } },
      );
      expect(run.status, run.stderr).to.equal(0);
      expect(Number(run.stdout.trim()), 'exports loaded').to.be.greaterThan(0);
    });
  }
  it('the control: the TypeORM adapter itself does require it', function () {
    this.timeout(60_000);
    const root = path.join(__dirname, '..');
    const run = spawnSync(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', '-e', `${refuse}\nrequire(${JSON.stringify(path.join(root, 'src/orm/typeorm/install.ts'))});`],
      { cwd: root, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } },
    );
    expect(run.status).to.not.equal(0);
    expect(run.stderr).to.contain('typeorm required by');
  });
});
