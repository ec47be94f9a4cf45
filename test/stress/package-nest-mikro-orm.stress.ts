import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { consumerProject, packOnce } from '../support/packed';
import { BACKENDS, dataSourceOptions } from '../support/backends';

/**
 * The packed package in a fresh MikroORM-only NestJS application with no typeorm installed:
 * `npm pack` of this checkout unpacked as node_modules/ormlock of a consumer project whose other
 * packages are this checkout's, except typeorm and @nestjs/typeorm (and every require of them is
 * refused too). OrmlockModule starts, and a @Pessimistic() endpoint is exact under 20 concurrent
 * requests while the same body under @Transactional() loses charges (test/fixtures/packed-nest-mikro-app.js).
 * In `npm run stress`, not `npm test`: packing builds the package (about 90 s on a loaded machine).
 * Alone: npx mocha test/stress/package-nest-mikro-orm.stress.ts
 */
const root = path.join(__dirname, '..', '..');
const WITHOUT = new Set(['typeorm', '@nestjs/typeorm', 'typeorm-transactional']);

describe('the packed package in a MikroORM-only NestJS application (no typeorm installed)', function () {
  this.timeout(240_000);
  let consumer: string;

  before(() => {
    const without = (dep: string) => WITHOUT.has(dep) || dep.startsWith('typeorm-');
    consumer = consumerProject(fs.mkdtempSync(path.join(packOnce().work, 'nest-mikro-')), (dep) => !without(dep));
    fs.copyFileSync(path.join(root, 'test', 'fixtures', 'packed-nest-mikro-app.js'), path.join(consumer, 'app.js'));
  });

  it('typeorm is not installed in the consumer', () => {
    expect(fs.existsSync(path.join(consumer, 'node_modules', 'typeorm'))).to.equal(false);
    expect(fs.existsSync(path.join(consumer, 'node_modules', '@nestjs', 'typeorm'))).to.equal(false);
  });

  for (const backend of BACKENDS) {
    it(`[${backend}] OrmlockModule starts; @Pessimistic() is exact under 20 concurrent requests, the @Transactional() control loses charges; typeorm is never loaded`, async function () {
      const ds = await dataSourceOptions(backend, []);
      if (!ds) return this.skip();
      const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '' };
      const out = execFileSync(process.execPath, ['app.js', backend, (ds as { url: string }).url], {
        cwd: consumer,
        encoding: 'utf8',
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const result = JSON.parse(out.trim().split('\n').pop()!);
      expect(result.installed).to.deep.equal(['mikro-orm:default']);
      expect(result.typeormLoaded).to.deep.equal([]);
      expect(result.control.failed).to.deep.equal([]);
      expect(result.control.credits, 'the control loses charges').to.be.greaterThan(1000 - 20 * 10);
      expect(result.locked.failed).to.deep.equal([]);
      expect(result.locked.credits).to.equal(1000 - 20 * 10);
    });
  }
});
