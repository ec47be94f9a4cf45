import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { EntitySchema } from 'typeorm';
import { createDataSource, dataSourceOptions, type BackendName } from './support/backends';
import { consumerProject, packOnce } from './support/packed';

/**
 * A new user's path: each quick start of the README (TypeORM, MikroORM, NestJS), taken from the
 * README's code block by this test, goes into a fresh ESM project where the packed ormlock and
 * exactly the packages of the README's install line for that stack are installed; it is
 * type-checked (tsc --strict) and run as written against PostgreSQL (MikroORM: on MariaDB too, as
 * its import comment says). What a user brings is added around it, never inside: before it, the
 * `User` and `Order` entities (and the Nest app's `BillingService`); after it, ten concurrent
 * `charge(1, 1)` calls and a print of the user's credits. The tables are made here beforehand:
 * user 1 has 1000 credits, order 1 costs 7. The credits left check that the quick start's code ran
 * as written (its withLock and each charge once); that the lock is what keeps concurrent charges
 * exact is shown, with a control that loses charges, by the strategies' own tests.
 * Time: packing builds the package once per process (shared with test/package.test.ts, about a
 * minute on a loaded machine); then about 15 s per project (tsc, then the run).
 */
const root = path.join(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/** The first ```ts block under the README heading `## <heading>`. */
export function codeUnder(markdown: string, heading: string): string {
  const at = markdown.indexOf(`\n## ${heading}\n`);
  if (at < 0) throw new Error(`README: no heading '## ${heading}'`);
  const block = /```ts\n([\s\S]*?)```/.exec(markdown.slice(at));
  if (!block) throw new Error(`README: no ts code block under '## ${heading}'`);
  return block[1];
}

/** The packages of the README's install line for a stack (its table row), ormlock left out. */
export function installLine(markdown: string, stack: string): string[] {
  const row = markdown.split('\n').find((line) => line.startsWith(`| ${stack} |`));
  const command = row && /`npm install ([^`]+)`/.exec(row);
  if (!command) throw new Error(`README: no install line for '${stack}'`);
  return command[1].split(/\s+/).filter((p) => p !== 'ormlock');
}

const typeormEntities = [
  "import 'reflect-metadata';",
  "import { Entity as UserEntity, PrimaryColumn as UserKey, Column as UserColumn } from 'typeorm';",
  '@UserEntity() class User { @UserKey() id!: number; @UserColumn() credits!: number; }',
  '@UserEntity() class Order { @UserKey() id!: number; @UserColumn() price!: number; }',
];
const mikroOrmEntities = [
  "import 'reflect-metadata';",
  "import { Entity as UserEntity, PrimaryKey as UserKey, Property as UserColumn } from '@mikro-orm/core';",
  '@UserEntity() class User { @UserKey() id!: number; @UserColumn() credits!: number; }',
  '@UserEntity() class Order { @UserKey() id!: number; @UserColumn() price!: number; }',
];
const tenCharges = (billing: string) => `await Promise.all(Array.from({ length: 10 }, () => ${billing}.charge(1, 1)));`;

interface App {
  name: string;
  backend: BackendName;
  /** The README's install line (its stack), and what such an app has besides. */
  stack: string;
  extra: string[];
  before: string[];
  code: string;
  after: string[];
  /** The user's credits at the end: 1000, minus 10 if the quick start's own withLock ran, minus 10 × 7. */
  credits: number;
}

const typeorm = codeUnder(readme, 'Quick start: TypeORM');
const mikroOrm = codeUnder(readme, 'Quick start: MikroORM');
const nest = codeUnder(readme, 'Quick start: NestJS');
const apps: App[] = [
  {
    name: 'TypeORM',
    backend: 'postgres',
    stack: 'TypeORM + PostgreSQL',
    extra: [],
    before: typeormEntities,
    code: typeorm,
    after: [
      'const billing = new Billing();',
      tenCharges('billing'),
      "await billing.dailyReport('2026-12-03');",
      'console.log(JSON.stringify({ credits: (await dataSource.manager.findOneByOrFail(User, { id: 1 })).credits }));',
      'await dataSource.destroy();',
    ],
    credits: 1000 - 10 - 70,
  },
  ...(['postgres', 'mariadb'] as const).map((backend): App => ({
    name: `MikroORM (${backend})`,
    backend,
    stack: backend === 'postgres' ? 'MikroORM + PostgreSQL' : 'MikroORM + MariaDB',
    extra: [],
    before: mikroOrmEntities,
    // the import comment: "or @mikro-orm/mariadb"
    code: backend === 'postgres' ? mikroOrm : mikroOrm.replace("from '@mikro-orm/postgresql'", "from '@mikro-orm/mariadb'"),
    after: [
      'const billing = new Billing(orm);',
      tenCharges('billing'),
      'console.log(JSON.stringify({ credits: (await orm.em.fork().findOneOrFail(User, 1)).credits }));',
      'await orm.close();',
    ],
    credits: 1000 - 10 - 70,
  })),
  {
    name: 'NestJS',
    backend: 'postgres',
    stack: 'TypeORM + PostgreSQL',
    // the NestJS row of the install table, and what every Nest app has
    extra: ['@nestjs/typeorm', '@nestjs/common', '@nestjs/core'],
    before: [
      ...typeormEntities,
      "import { Injectable } from '@nestjs/common';",
      "import { DataSource as TypeOrmDataSource } from 'typeorm';",
      "import { Pessimistic, currentManager } from 'ormlock';",
      '@Injectable() class BillingService {',
      '  constructor(private readonly dataSource: TypeOrmDataSource) {}',
      '  @Pessimistic() async charge(userId: number, orderId: number) {',
      '    const manager = currentManager(this.dataSource);',
      '    const user = await manager.findOneByOrFail(User, { id: userId });',
      '    user.credits -= (await manager.findOneByOrFail(Order, { id: orderId })).price;',
      '    await manager.save(user);',
      '  }',
      '}',
    ],
    code: nest,
    after: [
      "import { NestFactory } from '@nestjs/core';",
      'const app = await NestFactory.createApplicationContext(AppModule, { logger: false });',
      tenCharges('app.get(BillingService)'),
      'console.log(JSON.stringify({ credits: (await app.get(TypeOrmDataSource).manager.findOneByOrFail(User, { id: 1 })).credits }));',
      'await app.close();',
    ],
    credits: 1000 - 70,
  },
];

const users = new EntitySchema<{ id: number; credits: number }>({
  name: 'User',
  tableName: 'user',
  columns: { id: { type: Number, primary: true }, credits: { type: Number } },
});
const orders = new EntitySchema<{ id: number; price: number }>({
  name: 'Order',
  tableName: 'order',
  columns: { id: { type: Number, primary: true }, price: { type: Number } },
});

describe("a new user's path: the README's quick starts, run as written from the packed package", function () {
  this.timeout(300_000);

  before(() => {
    packOnce();
  });

  for (const app of apps) {
    it(`${app.name}: the quick start type-checks (strict) and runs in a fresh app with only its install line`, async function () {
      const ds = await createDataSource(app.backend, [users, orders]);
      if (!ds) return this.skip();
      await ds.getRepository(users).save({ id: 1, credits: 1000 });
      await ds.getRepository(orders).save({ id: 1, price: 7 });
      await ds.destroy();
      const url = ((await dataSourceOptions(app.backend, [])) as { url: string }).url;

      const deps = [...installLine(readme, app.stack), ...app.extra, '@types/node'];
      const dir = consumerProject(fs.mkdtempSync(path.join(packOnce().work, 'quick-start-')), (dep) => deps.includes(dep), 'module');
      fs.writeFileSync(path.join(dir, 'app.ts'), [...app.before, '', app.code, ...app.after, ''].join('\n'));
      const flags = [
        '--strict',
        '--target',
        'ES2022',
        '--module',
        'node16',
        '--moduleResolution',
        'node16',
        '--experimentalDecorators',
        '--emitDecoratorMetadata',
        '--types',
        'node',
        '--skipLibCheck',
      ];
      const run = (file: string, args: string[], env: NodeJS.ProcessEnv = process.env) => {
        try {
          return execFileSync(file, args, { cwd: dir, encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
        } catch (error) {
          const e = error as { stdout?: string; stderr?: string };
          return expect.fail(
            `${app.name}: ${path.basename(args[0])} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}\n--- app.ts:\n${fs.readFileSync(path.join(dir, 'app.ts'), 'utf8')}`,
          );
        }
      };
      run(process.execPath, [tsc, ...flags, 'app.ts']);
      const out = run(process.execPath, ['app.js'], { ...process.env, NODE_OPTIONS: '', DATABASE_URL: url });
      expect(JSON.parse(out.trim().split('\n').pop()!)).to.deep.equal({ credits: app.credits });
    });
  }
});
