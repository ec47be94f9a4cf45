/**
 * ormlock/nestjs on @nestjs/typeorm: a real HTTP server (app.listen(0)) and 20 concurrent POSTs
 * started on a barrier, on PostgreSQL and MariaDB. Each locked provider method has a control —
 * the same body without the lock — that must lose charges: its callers wait on a Barrier after
 * their reads (every party has read before anyone writes), since requests left to overlap by
 * chance reach the handlers spread out by HTTP parsing and routing, and on a loaded machine one
 * charge could commit before the next request read.
 */
import { Module, type INestApplication } from '@nestjs/common';
import { getDataSourceToken, getRepositoryToken, TypeOrmModule } from '@nestjs/typeorm';
import { Test } from '@nestjs/testing';
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { DataSource, type DataSourceOptions, type Repository } from 'typeorm';
import { installLocking, inTransaction, LockConfigError, Redlock, withLock } from '../src';
import { liveInstallations } from '../src/installations';
import { ORMLOCK_REDLOCK, OrmlockInstallations, OrmlockModule } from '../src/nestjs';
import { Barrier, race } from '../src/testing';
import { BillOrder, BillUser } from './fixtures/billing';
import { AnalyticsBilling, billingApp, NestBilling, StartupCheck, type AppConfig, type ChargeMode } from './fixtures/nest-billing';
import { BACKENDS, dataSourceOptions } from './support/backends';
import { requireRedis } from './support/redis-answers';
import { redisUrls } from './support/redis-servers';

/** The NestJS this process loaded (the root's 11, or compat/nest-12 under ORMLOCK_NEST=12). */
function nestVersion(): string {
  let dir = path.dirname(require.resolve('@nestjs/core'));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
}
const NEST = nestVersion();

const N = 20;
const PRICE = 10;
const START = 1000;
/** The DataSources' pool (poolSize below). */
const POOL = 12;
/**
 * A control's barrier parties when each caller waits inside its transaction, holding a connection:
 * at most POOL (more would wait forever for a connection held by a waiting caller); a few spare.
 */
const K = POOL - 2;
/**
 * The fewest credits such a control can leave: the K callers that all read START before anyone
 * wrote each write START − PRICE, so at most one of their charges counts — at least K − 1 are lost.
 */
const CONTROL_FLOOR = START - (N - (K - 1)) * PRICE;

interface Running {
  app: INestApplication;
  url: string;
}

async function start(config: AppConfig): Promise<Running> {
  const moduleRef = await Test.createTestingModule({ imports: [billingApp(config)] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  try {
    await app.listen(0, '127.0.0.1');
  } catch (error) {
    await app.close();
    throw error;
  }
  return { app, url: (await app.getUrl()).replace('[::1]', '127.0.0.1') };
}

async function post<T = unknown>(url: string, path: string, body: unknown): Promise<{ status: number; json?: T; text: string }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, text, json: text ? (JSON.parse(text) as T) : undefined };
}

/**
 * Seeds a user and N orders over HTTP, fires N concurrent charges, returns the credits left and the
 * failed responses. `allRead` (controls only): the unlocked handlers wait on it after their reads.
 */
async function chargeConcurrently(run: Running, mode: ChargeMode, allRead?: Barrier) {
  const seeded = await post<{ userId: number; orderIds: number[] }>(run.url, '/billing/seed', { credits: START, n: N, price: PRICE });
  expect(seeded.status, seeded.text).to.equal(201);
  const { userId, orderIds } = seeded.json!;
  const billing = run.app.get(NestBilling);
  billing.allRead = allRead;
  let results;
  try {
    results = await race(N, (i) => post(run.url, `/billing/charge/${mode}`, { userId, orderId: orderIds[i] }));
  } finally {
    billing.allRead = undefined;
  }
  const failed = results
    .map((r) => (r.status === 'fulfilled' ? (r.value.status === 204 ? null : `${r.value.status} ${r.value.text}`) : String(r.reason)))
    .filter(Boolean);
  const { json } = await post<{ credits: number }>(run.url, '/billing/credits', { userId });
  return { credits: json!.credits, failed };
}

for (const backend of BACKENDS) {
  describe(`ormlock/nestjs with @nestjs/typeorm on Nest ${NEST} [${backend}]`, function () {
    let dataSource: DataSourceOptions;
    let run: Running | undefined;

    before(async function () {
      const options = await dataSourceOptions(backend, [BillUser, BillOrder], { poolSize: POOL });
      if (!options) return this.skip();
      await requireRedis(this, `ormlock/nestjs [${backend}]`);
      dataSource = options;
      run = await start({ dataSource, ormlock: { namespace: 'nest-test', redis: { nodes: [redisUrls()[0]] } } });
    });

    after(async () => {
      await run?.app.close();
      expect(liveInstallations(), 'nothing stays installed after app.close()').to.have.length(0);
    });

    it("a provider's own onModuleInit that takes a row lock runs after installation", () => {
      expect(run!.app.get(StartupCheck).lockedAtStartup).to.equal(true);
      const installations = run!.app.get(OrmlockInstallations);
      expect(installations.all.map((i) => `${i.kind}:${i.name}`)).to.deep.equal(['typeorm:default']);
      expect(installations.dataSource()!.installation.settings.namespace).to.equal('nest-test');
    });

    it('control: 20 concurrent POSTs to the same body without @Pessimistic lose charges', async () => {
      const { credits, failed } = await chargeConcurrently(run!, 'unlocked', new Barrier(K));
      expect(failed).to.deep.equal([]);
      expect(credits, `at least ${K - 1} lost charges expected without a lock`).to.be.at.least(CONTROL_FLOOR);
    });

    it('@Pessimistic() provider method over @InjectRepository repositories: 20 concurrent POSTs, credits exact', async () => {
      const { credits, failed } = await chargeConcurrently(run!, 'pessimistic');
      expect(failed).to.deep.equal([]);
      expect(credits).to.equal(START - N * PRICE);
    });

    it('control: the same through the @InjectEntityManager() manager without @Pessimistic loses charges', async () => {
      const { credits, failed } = await chargeConcurrently(run!, 'manager-unlocked', new Barrier(K));
      expect(failed).to.deep.equal([]);
      expect(credits, `at least ${K - 1} lost charges expected without a lock`).to.be.at.least(CONTROL_FLOOR);
    });

    it('@Pessimistic() through the @InjectEntityManager() manager: credits exact', async () => {
      const { credits, failed } = await chargeConcurrently(run!, 'manager-pessimistic');
      expect(failed).to.deep.equal([]);
      expect(credits).to.equal(START - N * PRICE);
    });

    it('@Pessimistic() through the injected DataSource (getRepository inside): credits exact', async () => {
      const { credits, failed } = await chargeConcurrently(run!, 'datasource-pessimistic');
      expect(failed).to.deep.equal([]);
      expect(credits).to.equal(START - N * PRICE);
    });

    it('control: the body of the @AdvisoryLock method in a plain transaction loses charges', async () => {
      const { credits, failed } = await chargeConcurrently(run!, 'advisory-control', new Barrier(K));
      expect(failed).to.deep.equal([]);
      expect(credits, `at least ${K - 1} lost charges expected without a lock`).to.be.at.least(CONTROL_FLOOR);
    });

    it('@AdvisoryLock((userId) => …) keyed from the method arguments: credits exact', async () => {
      const { credits, failed } = await chargeConcurrently(run!, 'advisory');
      expect(failed).to.deep.equal([]);
      expect(credits).to.equal(START - N * PRICE);
    });

    it('control: the body of the @DistributedLock method without the lease loses charges', async () => {
      // no transaction: a caller waiting on the barrier holds no connection, so all N are parties —
      // every charge reads START and writes START − PRICE
      const { credits, failed } = await chargeConcurrently(run!, 'lease-control', new Barrier(N));
      expect(failed).to.deep.equal([]);
      expect(credits, 'every charge but one lost without the lease').to.equal(START - PRICE);
    });

    it('@DistributedLock with the @InjectRedlock() Redlock: credits exact', async () => {
      const { credits, failed } = await chargeConcurrently(run!, 'lease');
      expect(failed).to.deep.equal([]);
      expect(credits).to.equal(START - N * PRICE);
    });

    it('create and close the application 5 times (forRoot and forRootAsync), then a sixth serves correctly', async () => {
      await run!.app.close();
      run = undefined;
      expect(liveInstallations()).to.have.length(0);
      for (let i = 0; i < 5; i++) {
        const cycle = await start({ dataSource, async: i % 2 === 1, ormlock: { namespace: `cycle-${i}`, redis: { nodes: [redisUrls()[0]] } } });
        expect(cycle.app.get(OrmlockInstallations).all).to.have.length(1);
        expect(liveInstallations()).to.have.length(1);
        await cycle.app.close();
        expect(liveInstallations(), 'no installation left by a closed app').to.have.length(0);
      }
      run = await start({ dataSource, async: true, ormlock: { namespace: 'sixth', redis: { nodes: [redisUrls()[0]] } } });
      const { credits, failed } = await chargeConcurrently(run, 'pessimistic');
      expect(failed).to.deep.equal([]);
      expect(credits).to.equal(START - N * PRICE);
      const leased = await chargeConcurrently(run, 'lease');
      expect(leased.failed).to.deep.equal([]);
      expect(leased.credits).to.equal(START - N * PRICE);
    });

    it("dataSources: ['default', 'analytics'] installs on both, each with its settings; a lock on an entity goes to its own; close leaves none", async () => {
      const before = liveInstallations().length;
      @Module({
        imports: [
          TypeOrmModule.forRoot({ ...dataSource, entities: [BillUser, BillOrder] } as DataSourceOptions),
          TypeOrmModule.forRoot({
            ...dataSource,
            name: 'analytics',
            entities: [BillUser, BillOrder],
            synchronize: false,
            dropSchema: false,
          } as unknown as DataSourceOptions),
          TypeOrmModule.forFeature([BillUser], 'analytics'),
          OrmlockModule.forRoot({ namespace: 'main', dataSources: ['default', { name: 'analytics', namespace: 'an' }] }),
        ],
      })
      class TwoSources {}
      const app = (await Test.createTestingModule({ imports: [TwoSources] }).compile()).createNestApplication({ logger: false });
      try {
        await app.init();
        const installations = app.get(OrmlockInstallations);
        expect(installations.all.map((i) => i.name)).to.deep.equal(['default', 'analytics']);
        expect(installations.dataSource()!.installation.settings.namespace).to.equal('main');
        expect(installations.dataSource('analytics')!.installation.settings.namespace).to.equal('an');
        expect(liveInstallations()).to.have.length(before + 2);
        const analytics = app.get<DataSource>(getDataSourceToken('analytics'));
        const main = app.get(DataSource);
        const users = app.get<Repository<BillUser>>(getRepositoryToken(BillUser, 'analytics'));
        const user = await users.save(users.create({ credits: 5, name: 'analytics' }));
        const seen = await withLock(user, async () => ({ analytics: inTransaction(analytics), main: inTransaction(main) }));
        expect(seen).to.deep.equal({ analytics: true, main: false });
      } finally {
        await app.close();
      }
      expect(liveInstallations()).to.have.length(before);
    });

    it('two DataSources: decorators name theirs with dataSource: (self) => self.analytics — 20 concurrent charges exact with @Pessimistic and @AdvisoryLock, the @Transactional control loses; without it the call fails loudly', async () => {
      @Module({
        imports: [
          TypeOrmModule.forRoot({ ...dataSource, entities: [BillUser, BillOrder] } as DataSourceOptions),
          TypeOrmModule.forRoot({
            ...dataSource,
            name: 'analytics',
            entities: [BillUser, BillOrder],
            synchronize: false,
            dropSchema: false,
          } as unknown as DataSourceOptions),
          TypeOrmModule.forFeature([BillUser, BillOrder], 'analytics'),
          OrmlockModule.forRoot({ dataSources: ['default', 'analytics'] }),
        ],
        providers: [AnalyticsBilling],
      })
      class TwoSources {}
      const app = (await Test.createTestingModule({ imports: [TwoSources] }).compile()).createNestApplication({ logger: false });
      try {
        await app.init();
        const billing = app.get(AnalyticsBilling);
        const charge = async (method: 'chargeUnlocked' | 'chargePessimistic' | 'chargeAdvisory') => {
          const { userId, orderIds } = await billing.seed(START, N, PRICE);
          // the control's callers wait (inside their transactions, K ≤ the pool) until K have read the user
          const allRead = method === 'chargeUnlocked' ? new Barrier(K) : undefined;
          const results = await race(N, (i) => (allRead ? billing.chargeUnlocked(userId, orderIds[i], allRead) : billing[method](userId, orderIds[i])));
          return {
            credits: await billing.credits(userId),
            failed: results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)),
          };
        };
        const control = await charge('chargeUnlocked');
        expect(control.failed).to.deep.equal([]);
        expect(control.credits, `at least ${K - 1} lost charges expected without a lock`).to.be.at.least(CONTROL_FLOOR);
        for (const method of ['chargePessimistic', 'chargeAdvisory'] as const) {
          const r = await charge(method);
          expect(r.failed, method).to.deep.equal([]);
          expect(r.credits, method).to.equal(START - N * PRICE);
        }
        const ambiguous = await billing.chargeAmbiguous(1, 1).then(
          () => null,
          (e: unknown) => e,
        );
        expect(ambiguous).to.be.instanceOf(LockConfigError);
        expect((ambiguous as Error).message).to.match(/installed on [23] ORM instances/);
        const nothing = await billing.chargeNamedNothing(1, 1).then(
          () => null,
          (e: unknown) => e,
        );
        expect(nothing).to.be.instanceOf(LockConfigError);
        expect((nothing as Error).message)
          .to.contain('AnalyticsBilling.chargeNamedNothing')
          .and.contain('dataSource(self) returned undefined');
      } finally {
        await app.close();
      }
    });

    it('without a redis option the injected Redlock is null, and a @DistributedLock naming it fails each call loudly', async () => {
      @Module({
        imports: [
          TypeOrmModule.forRoot({ ...dataSource, entities: [BillUser, BillOrder] } as DataSourceOptions),
          TypeOrmModule.forFeature([BillUser, BillOrder]),
          OrmlockModule.forRoot(),
        ],
        providers: [NestBilling],
      })
      class NoRedis {}
      const app = (await Test.createTestingModule({ imports: [NoRedis] }).compile()).createNestApplication({ logger: false });
      try {
        await app.init();
        const billing = app.get(NestBilling);
        expect(billing.redlock).to.equal(null);
        expect(app.get(Redlock)).to.equal(null);
        const err = await billing.chargeLeased(1, 1).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(LockConfigError);
        expect((err as Error).message)
          .to.contain('NestBilling.chargeLeased')
          .and.contain('got null');
      } finally {
        await app.close();
      }
    });

    it('the Redlock class is a provider token for the same Redlock as @InjectRedlock()', () => {
      const billing = run!.app.get(NestBilling);
      expect(billing.redlock).to.be.instanceOf(Redlock);
      expect(run!.app.get(Redlock)).to.equal(billing.redlock);
      expect(run!.app.get(ORMLOCK_REDLOCK)).to.equal(billing.redlock);
    });

    it('a DataSource the application installed itself (installLocking in dataSourceFactory) fails the start with LockConfigError saying so', async () => {
      const before = liveInstallations().length;
      let own: DataSource | undefined;
      @Module({
        imports: [
          TypeOrmModule.forRootAsync({
            useFactory: () => ({ ...dataSource, entities: [BillUser, BillOrder] }) as DataSourceOptions,
            dataSourceFactory: async (options) => {
              own = await new DataSource(options!).initialize();
              await installLocking(own); // the pre-OrmlockModule workaround
              return own;
            },
          }),
          OrmlockModule.forRoot(),
        ],
      })
      class InstalledByHand {}
      // installing happens while the providers are created: compile() itself fails
      const err = await Test.createTestingModule({ imports: [InstalledByHand] })
        .compile()
        .then(
          () => null,
          (e: unknown) => e,
        );
      await own?.destroy();
      expect(err).to.be.instanceOf(LockConfigError);
      expect((err as Error).message)
        .to.contain("DataSource 'default' is already installed")
        .and.contain('drop the other installLocking call');
      expect(liveInstallations(), 'only the application’s own installation was there, gone with its DataSource').to.have.length(before);
    });

    it('a DataSource name that is not in the application fails the start with LockConfigError naming it', async () => {
      const moduleRef = await Test.createTestingModule({
        imports: [billingApp({ dataSource, ormlock: { dataSources: ['default', 'reporting'] } })],
      }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      const err = await app.init().then(
        () => null,
        (e: unknown) => e,
      );
      await app.close();
      expect(err).to.be.instanceOf(LockConfigError);
      expect((err as Error).message)
        .to.contain("DataSource 'reporting'")
        .and.contain("TypeOrmModule.forRoot({ name: 'reporting'");
      expect(liveInstallations()).to.have.length(1); // the failed app's 'default' was undone; the suite's app remains
    });
  });
}

describe('OrmlockModule redis: { nodes } without an ORM (dataSources: [])', () => {
  before(async function () {
    await requireRedis(this, 'OrmlockModule redis');
  });

  it("URLs become clients the module quits on close; a client passed in stays the caller's; the Redlock takes the module's namespace", async () => {
    const { default: Redis } = await import('ioredis');
    const mine = new Redis(redisUrls()[0]);
    try {
      // three keyspaces of one server stand for three nodes (database 0, 14, 15)
      const base = new URL(redisUrls()[0]);
      const asUrl = new URL(base.toString());
      asUrl.pathname = '/14';
      const asOptions = { host: base.hostname, port: Number(base.port || 6379), db: 15 };
      @Module({ imports: [OrmlockModule.forRoot({ dataSources: [], namespace: 'nest-redis', redis: { nodes: [mine, asUrl.toString(), asOptions] } })] })
      class RedisOnly {}
      const app = (await Test.createTestingModule({ imports: [RedisOnly] }).compile()).createNestApplication({ logger: false });
      await app.init();
      const redlock = app.get(Redlock);
      expect(redlock.namespace).to.equal('nest-redis');
      expect(redlock.clients).to.have.length(3);
      expect(redlock.clients[0]).to.equal(mine);
      const lease = await redlock.acquire('nest-redis-probe', 2_000);
      expect(await lease.release()).to.equal(true);
      expect(app.get(OrmlockInstallations).all).to.deep.equal([]);
      await app.close();
      // quit() was answered: the connections end (a client never quit would hang here until mocha's timeout)
      await Promise.all(
        redlock.clients.slice(1).map((c) => (c.status === 'end' ? undefined : new Promise((r) => (c as import('ioredis').Redis).once('end', r)))),
      );
      expect(mine.status).to.equal('ready');
      expect(await mine.ping()).to.equal('PONG');
    } finally {
      mine.disconnect();
    }
  });
});

describe('OrmlockModule options', () => {
  it(`runs on the Nest major this process was given (ORMLOCK_NEST=${process.env.ORMLOCK_NEST ?? ''}, loaded ${NEST})`, () => {
    const wanted = process.env.ORMLOCK_NEST && process.env.ORMLOCK_NEST !== 'default' ? process.env.ORMLOCK_NEST : '11';
    expect(NEST.split('.')[0]).to.equal(wanted);
  });

  it('bad options are a LockConfigError at the module definition, naming the option', () => {
    expect(() => OrmlockModule.forRoot({ dataSources: 'default' as never })).to.throw(LockConfigError, /dataSources must be an array/);
    expect(() => OrmlockModule.forRoot({ dataSources: [''] })).to.throw(LockConfigError, /dataSources\[0\]/);
    expect(() => OrmlockModule.forRoot({ dataSources: ['a', 'a'] })).to.throw(LockConfigError, /'a' twice/);
    expect(() => OrmlockModule.forRoot({ redis: { nodes: [] } })).to.throw(LockConfigError, /redis must be \{ nodes/);
    expect(() => OrmlockModule.forRoot({ redis: { nodes: ['127.0.0.1:6379'] } })).to.throw(LockConfigError, /redis\.nodes\[0\] must be a redis:\/\//);
    expect(() => OrmlockModule.forRoot({ namespce: 'x' } as never)).to.throw(LockConfigError, /unknown option 'namespce'/);
    expect(() => OrmlockModule.forRoot({ mikroOrm: 'yes' as never })).to.throw(LockConfigError, /mikroOrm must be/);
    expect(() => OrmlockModule.forRootAsync({} as never)).to.throw(LockConfigError, /useFactory must be a function/);
  });
});
