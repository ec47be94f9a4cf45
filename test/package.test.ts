import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { consumerProject, packOnce } from './support/packed';

/**
 * The package as users get it: `npm pack` of an unbuilt checkout (prepack builds it), unpacked
 * into a consumer project outside the repository, then type-checked under each
 * `moduleResolution` and loaded with `require` and `import`. Every "exports" subpath is
 * covered, so a new entry point (ormlock/mikro-orm, …) is tested by adding it to package.json.
 */
const root = path.join(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  name: string;
  types: string;
  exports: Record<string, string | { types: string; import: string; require: string }>;
  typesVersions?: Record<string, Record<string, string[]>>;
};
const entries = Object.entries(pkg.exports)
  .filter(([subpath]) => subpath !== './package.json')
  .map(([subpath, target]) => ({ subpath, target: target as { types: string; import: string; require: string } }));
const specifier = (subpath: string) => (subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`);
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/**
 * A consumer file using each entry point; valid as ESM and as CommonJS. It fails to compile when a
 * subpath's types are missing or `any`, or when our .d.ts import something the consumer's
 * resolution cannot find (hence no --skipLibCheck).
 */
function consumerSource(): string {
  return [
    "import 'reflect-metadata';",
    "import type { DataSource } from 'typeorm';",
    `import { installLocking, LockConfigError, LockError, Pessimistic, Transactional, type LockingHandle } from '${pkg.name}';`,
    `import { race, Barrier } from '${pkg.name}/testing';`,
    ...entries.map(({ subpath }, i) => `import * as entry${i} from '${specifier(subpath)}';`),
    'type IsAny<T> = 0 extends 1 & T ? true : false;',
    ...entries.map((_, i) => `export const typed${i}: IsAny<typeof entry${i}> = false;`),
    "export const setup = (ds: DataSource): Promise<LockingHandle> => installLocking(ds, { namespace: 'shop' });",
    'export const settled: Promise<PromiseSettledResult<number>[]> = race(2, async (i: number) => i);',
    '// @ts-expect-error race takes a count first',
    "race('two', async () => 1);",
    'export const barrier = new Barrier(2);',
    "export const afterAllRead: Promise<string> = barrier.wait(Promise.resolve('read'));",
    "export const failure: LockError = new LockConfigError('bad');",
    'export class Billing {',
    '  @Transactional()',
    '  @Pessimistic()',
    '  async charge(): Promise<void> {}',
    '}',
    '',
  ].join('\n');
}

describe('the packed package', function () {
  this.timeout(180_000);
  let work: string;
  let consumer: string;
  let packed: string[];

  before(() => {
    const pack = packOnce();
    work = pack.work;
    packed = pack.files;
    // The consumer: the tarball unpacked as node_modules/ormlock (it has no dependencies of its
    // own); its peers and @types are this checkout's, linked.
    consumer = consumerProject(path.join(work, 'consumer'), () => true);
    for (const ext of ['ts', 'mts', 'cts']) fs.writeFileSync(path.join(consumer, `consumer.${ext}`), consumerSource());
  });

  const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: consumer, encoding: 'utf8' });

  it('npm pack of an unbuilt checkout builds first: every entry point ships its CommonJS, ESM and types files', () => {
    const expected = entries.flatMap(({ target }) => [target.require, target.import, target.types]).map((f) => f.replace(/^\.\//, ''));
    expect(packed).to.include.members([...expected, 'package.json', 'README.md', 'dist/decorators/Pessimistic.js']);
    expect(
      packed.filter((f) => f.startsWith('dist/') && !/^dist\/(src|decorators|esm)\//.test(f)),
      'nothing else from dist',
    ).to.deep.equal([]);
  });

  it('every subpath has types under moduleResolution node: a typesVersions entry pointing at its exports types', () => {
    expect(pkg.types, 'package.json "types"').to.equal(pkg.exports['.'] && (pkg.exports['.'] as { types: string }).types);
    for (const { subpath, target } of entries.filter((e) => e.subpath !== '.')) {
      expect(pkg.typesVersions?.['*']?.[subpath.slice(2)], `package.json typesVersions["*"]["${subpath.slice(2)}"]`).to.deep.equal([target.types]);
    }
  });

  const resolutions: Array<{ name: string; flags: string[]; files: string[] }> = [
    // esModuleInterop: MikroORM's own declarations (reached through ormlock/mikro-orm) default-import
    // dataloader, and MikroORM requires the flag; node16 and bundler imply it
    { name: 'node (node10), CommonJS', flags: ['--module', 'commonjs', '--moduleResolution', 'node', '--esModuleInterop'], files: ['consumer.ts'] },
    {
      name: 'node16, an ESM (.mts) and a CommonJS (.cts) file',
      flags: ['--module', 'node16', '--moduleResolution', 'node16'],
      files: ['consumer.mts', 'consumer.cts'],
    },
    { name: 'bundler, ESNext', flags: ['--module', 'esnext', '--moduleResolution', 'bundler'], files: ['consumer.ts'] },
  ];
  for (const { name, flags, files } of resolutions) {
    it(`a consumer type-checks with moduleResolution ${name} (tsc --noEmit)`, () => {
      const args = [tsc, '--noEmit', '--strict', '--target', 'ES2022', '--experimentalDecorators', '--types', 'node', ...flags, ...files];
      try {
        execFileSync(process.execPath, args, { cwd: consumer, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string };
        expect.fail(`tsc ${flags.join(' ')} ${files.join(' ')}:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
      }
    });
  }

  /**
   * Apps that install only one ORM's packages (and Nest's, for ormlock/nestjs): ormlock's .d.ts must not need the others
   * (skipLibCheck false), and currentManager() must not silently become `any`.
   */
  const standalone = [
    {
      name: 'a TypeORM-only app (no ioredis, no MikroORM, no Nest)',
      deps: ['typeorm', 'reflect-metadata', 'pg'],
      source: [
        "import 'reflect-metadata';",
        "import type { DataSource, EntityManager } from 'typeorm';",
        `import { installLocking, currentManager, Pessimistic, Transactional, AdvisoryLock, createFencingTable, type LockingHandle } from '${pkg.name}';`,
        `import { race } from '${pkg.name}/testing';`,
        'type IsAny<T> = 0 extends 1 & T ? true : false;',
        'const ambient = currentManager();',
        'export const notAny: IsAny<typeof ambient> = false;',
        'export const manager = (ds: DataSource): EntityManager => currentManager(ds);',
        'export const setup = (ds: DataSource): Promise<LockingHandle<DataSource>> => installLocking(ds);',
        'export const fencing = (ds: DataSource): Promise<void> => createFencingTable(ds);',
        'export const settled = race(2, async (i: number) => i);',
        'export class Billing {',
        '  @Transactional() @Pessimistic() @AdvisoryLock((id: number) => `charge:${id}`)',
        '  async charge(id: number): Promise<number> { return id; }',
        '}',
      ],
    },
    {
      name: 'a MikroORM-only app (no typeorm, no ioredis, no Nest)',
      deps: ['@mikro-orm/core', '@mikro-orm/postgresql', '@mikro-orm/knex', 'reflect-metadata'],
      source: [
        "import 'reflect-metadata';",
        "import type { MikroORM } from '@mikro-orm/postgresql';",
        `import { currentManager, Transactional, AdvisoryLock } from '${pkg.name}';`,
        `import { installLocking } from '${pkg.name}/mikro-orm';`,
        'type IsAny<T> = 0 extends 1 & T ? true : false;',
        'const ambient = currentManager();',
        'export const notAny: IsAny<typeof ambient> = false;',
        "export const manager = (orm: MikroORM): MikroORM['em'] => currentManager(orm);",
        'export const setup = (orm: MikroORM) => installLocking(orm);',
        'export class Billing {',
        '  @Transactional() @AdvisoryLock((id: number) => `charge:${id}`)',
        '  async charge(id: number): Promise<number> { return id; }',
        '}',
      ],
    },
    {
      name: 'a NestJS + MikroORM app (no typeorm, no @nestjs/typeorm, no ioredis)',
      deps: ['@mikro-orm/core', '@mikro-orm/postgresql', '@mikro-orm/knex', '@mikro-orm/nestjs', '@nestjs/common', '@nestjs/core', 'reflect-metadata', 'rxjs'],
      source: [
        "import 'reflect-metadata';",
        "import { Injectable, Module } from '@nestjs/common';",
        "import { APP_FILTER } from '@nestjs/core';",
        "import { MikroOrmModule } from '@mikro-orm/nestjs';",
        "import type { MikroORM } from '@mikro-orm/postgresql';",
        `import { Pessimistic, currentManager } from '${pkg.name}';`,
        `import { OrmlockModule, OrmlockExceptionFilter, OrmlockInstallations, type OrmlockModuleOptions } from '${pkg.name}/nestjs';`,
        'type IsAny<T> = 0 extends 1 & T ? true : false;',
        'export const optionsNotAny: IsAny<OrmlockModuleOptions> = false;',
        "export const options: OrmlockModuleOptions = { mikroOrm: { contextName: 'main' }, namespace: 'shop' };",
        "export const kinds = (installations: OrmlockInstallations): Array<'typeorm' | 'mikro-orm'> => installations.all.map((i) => i.kind);",
        'export const namespaceOf = (installations: OrmlockInstallations): string | undefined => installations.dataSource()?.installation.settings.namespace;',
        '@Injectable()',
        'export class Billing {',
        '  constructor(private readonly orm: MikroORM) {}',
        '  @Pessimistic()',
        "  async charge(id: number): Promise<MikroORM['em']> { await this.orm.em.findOne('User', id); return currentManager(this.orm); }",
        '}',
        '@Module({',
        "  imports: [MikroOrmModule.forRoot({ contextName: 'main' }), OrmlockModule.forRoot(options)],",
        '  providers: [Billing, { provide: APP_FILTER, useClass: OrmlockExceptionFilter }],',
        '})',
        'export class AppModule {}',
      ],
    },
  ];
  for (const app of standalone) {
    it(`${app.name} type-checks with skipLibCheck false`, () => {
      const dir = consumerProject(path.join(work, app.name.replace(/\W+/g, '-')), (dep) => [...app.deps, '@types/node'].includes(dep));
      fs.writeFileSync(path.join(dir, 'app.ts'), app.source.join('\n') + '\n');
      const args = [
        tsc,
        '--noEmit',
        '--strict',
        '--skipLibCheck',
        'false',
        '--target',
        'ES2022',
        '--experimentalDecorators',
        '--emitDecoratorMetadata',
        '--types',
        'node',
      ];
      try {
        execFileSync(process.execPath, [...args, '--module', 'node16', '--moduleResolution', 'node16', 'app.ts'], {
          cwd: dir,
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string };
        expect.fail(`${app.name}:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
      }
    });
  }

  it('can be required (CommonJS) by its name, every subpath, with the contract names', () => {
    const out = node([
      '-e',
      `
      const m = require('ormlock'); const t = require('ormlock/testing');
      const names = ['installLocking','transaction','Transactional','currentManager','Current','defineCurrent','lock','withLock','Pessimistic',
        'Versioned','RetryOnConflict','createOrFind','AdvisoryLock','withAdvisoryLock','advisoryLockExists','AroundCreate','lockParent',
        'Redlock','DistributedLock','inspectLocks',
        'LockError','LockTimeoutError','LockNotAvailableError','DeadlockError','StaleEntityError','TransactionRequiredError','LockConfigError','LockLostError'];
      const missing = names.filter((n) => typeof m[n] === 'undefined');
      const subpaths = ${JSON.stringify(entries.map((e) => specifier(e.subpath)))}.map((s) => [s, Object.keys(require(s)).length]);
      console.log(JSON.stringify({ missing, race: typeof t.race, err: new m.LockTimeoutError('x') instanceof m.LockError, from: require.resolve('ormlock'), subpaths }));
    `,
    ]);
    const result = JSON.parse(out);
    expect(result).to.deep.include({ missing: [], race: 'function', err: true });
    expect(result.from, 'the installed copy, not the checkout').to.equal(
      path.join(fs.realpathSync(consumer), 'node_modules', pkg.name, pkg.exports['.'] && (pkg.exports['.'] as { require: string }).require),
    );
    for (const [s, n] of result.subpaths) expect(n, `${s} exports names`).to.be.greaterThan(0);
  });

  it('can be imported (ESM) by its name, every subpath, and shares the CommonJS instance', () => {
    const out = node([
      '--input-type=module',
      '-e',
      `
      import { installLocking, LockError, Current } from 'ormlock';
      import { race } from 'ormlock/testing';
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      const cjs = require('ormlock');
      const subpaths = [];
      for (const s of ${JSON.stringify(entries.map((e) => specifier(e.subpath)))}) {
        const esm = await import(s);
        const names = Object.keys(require(s)).filter((n) => n !== 'default' && n !== '__esModule');
        subpaths.push([s, names.length > 0 && names.every((n) => esm[n] === require(s)[n])]);
      }
      console.log(JSON.stringify({ fn: typeof installLocking, race: typeof race, same: cjs.LockError === LockError && cjs.Current === Current, subpaths }));
    `,
    ]);
    const result = JSON.parse(out);
    expect(result).to.deep.include({ fn: 'function', race: 'function', same: true });
    for (const [s, same] of result.subpaths) expect(same, `${s}: ESM names are the CommonJS ones`).to.equal(true);
  });

  it('ormlock/opentelemetry loads by its name (CommonJS and ESM), and the ormlock command runs from the build', () => {
    const out = node([
      '--input-type=module',
      '-e',
      `
      import { openTelemetry } from 'ormlock/opentelemetry';
      import { createRequire } from 'node:module';
      const cjs = createRequire(import.meta.url)('ormlock/opentelemetry');
      const o = openTelemetry();
      o.onLockEvent({ type: 'acquired', kind: 'row', target: 'x', waitedMs: 1 });
      console.log(JSON.stringify({ fn: typeof openTelemetry, same: cjs.openTelemetry === openTelemetry, observer: typeof o.onLockEvent }));
    `,
    ]);
    expect(JSON.parse(out)).to.deep.equal({ fn: 'function', same: true, observer: 'function' });
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(pkg.bin).to.deep.equal({ ormlock: 'bin/ormlock.js' });
    let usage = '';
    try {
      execFileSync(process.execPath, [path.join(root, pkg.bin.ormlock)], {
        cwd: root,
        encoding: 'utf8',
        stdio: 'pipe',
        env: { ...process.env, ORMLOCK_CLI_FROM_SOURCE: '' },
      });
    } catch (error) {
      usage = String((error as { stderr?: string }).stderr);
      expect((error as { status?: number }).status).to.equal(2);
    }
    expect(usage).to.match(/usage: ormlock locks --url/);
  });
});
