/**
 * ormlock/nestjs with @mikro-orm/nestjs (`mikroOrm: true`): a real HTTP server and 20 concurrent
 * POSTs on a barrier, on PostgreSQL and MariaDB. A provider with the injected `EntityManager` and
 * an `EntityRepository`: `@Pessimistic()` leaves exact credits, the same body under a plain
 * `@Transactional()` loses charges — its callers wait on a Barrier after their reads, since requests
 * left to overlap by chance reach the handler spread out by HTTP parsing and routing, and on a
 * loaded machine one charge could commit before the next request read.
 */
import { Controller, HttpCode, Inject, Injectable, Module, Param, Post, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { EntityManager, EntityRepository, MikroORM, type Options } from '@mikro-orm/core';
import { Entity, ManyToOne, PrimaryKey, Property } from '@mikro-orm/core';
import { MariaDbDriver } from '@mikro-orm/mariadb';
import { MikroOrmModule, InjectRepository } from '@mikro-orm/nestjs';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { expect } from 'chai';
import { Pessimistic, Transactional } from '../src';
import { liveInstallations } from '../src/installations';
import { OrmlockInstallations, OrmlockModule } from '../src/nestjs';
import { Barrier, race } from '../src/testing';
import { BACKENDS, dataSourceOptions } from './support/backends';

@Entity({ tableName: 'nest_mk_users' })
class NkUser {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @Property({ type: 'integer' }) credits!: number;
}

@Entity({ tableName: 'nest_mk_orders' })
class NkOrder {
  @PrimaryKey({ type: 'integer' }) id!: number;
  @ManyToOne(() => NkUser) user!: NkUser;
  @Property({ type: 'integer' }) price!: number;
  @Property({ type: 'boolean', default: false }) paid: boolean = false;
}

const N = 20;
const PRICE = 10;
const START = 1000;
const GAP_MS = 15;
/** The MikroORM pool (pool.max below). */
const POOL = 12;
/**
 * The control's barrier parties: each caller waits inside its transaction, holding a connection, so
 * at most POOL (more would wait forever for a connection held by a waiting caller); a few spare.
 */
const K = POOL - 2;
/**
 * The fewest credits the control can leave: the K callers that all read START before anyone wrote
 * each write START − PRICE, so at most one of their charges counts — at least K − 1 are lost.
 */
const CONTROL_FLOOR = START - (N - (K - 1)) * PRICE;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

@Injectable()
class MikroNestBilling {
  constructor(
    @Inject(EntityManager) private readonly em: EntityManager,
    @InjectRepository(NkOrder) private readonly orders: EntityRepository<NkOrder>,
  ) {}

  /**
   * Set by the control test around its requests (HTTP cannot carry it): chargeUnlocked waits on it
   * after the reads, so every party has read before anyone writes. chargePessimistic never looks at
   * it (a lock holder waiting for callers blocked on its lock would hang).
   */
  allRead?: Barrier;

  private async chargeBody(userId: number, orderId: number, allRead?: Barrier): Promise<void> {
    const reads = (async () => ({ user: await this.em.findOneOrFail(NkUser, userId), order: await this.orders.findOneOrFail(orderId) }))();
    const { user, order } = await (allRead ? allRead.wait(reads) : reads);
    await sleep(GAP_MS);
    user.credits -= order.price;
    order.paid = true;
    await this.em.flush();
  }

  @Transactional()
  async chargeUnlocked(userId: number, orderId: number): Promise<void> {
    await this.chargeBody(userId, orderId, this.allRead);
  }

  @Pessimistic()
  async chargePessimistic(userId: number, orderId: number): Promise<void> {
    await this.chargeBody(userId, orderId);
  }

  async seed(): Promise<{ userId: number; orderIds: number[] }> {
    const em = this.em.fork();
    const user = em.create(NkUser, { credits: START });
    const orders = Array.from({ length: N }, () => em.create(NkOrder, { user, price: PRICE, paid: false }));
    await em.flush();
    return { userId: user.id, orderIds: orders.map((o) => o.id) };
  }

  async credits(userId: number): Promise<number> {
    return (await this.em.fork().findOneOrFail(NkUser, userId)).credits;
  }
}

@Controller('mikro')
class MikroController {
  constructor(@Inject(MikroNestBilling) private readonly billing: MikroNestBilling) {}

  @Post('seed')
  seed() {
    return this.billing.seed();
  }

  @Post('charge/:mode/:userId/:orderId')
  @HttpCode(204)
  async charge(@Param('mode') mode: string, @Param('userId') userId: string, @Param('orderId') orderId: string): Promise<void> {
    if (mode === 'pessimistic') await this.billing.chargePessimistic(Number(userId), Number(orderId));
    else await this.billing.chargeUnlocked(Number(userId), Number(orderId));
  }

  @Post('credits/:userId')
  async credits(@Param('userId') userId: string) {
    return { credits: await this.billing.credits(Number(userId)) };
  }
}

for (const backend of BACKENDS) {
  describe(`ormlock/nestjs with @mikro-orm/nestjs [${backend}]`, function () {
    let app: INestApplication | undefined;
    let url: string;

    let clientUrl: string;

    /** async: forRootAsync whose factory alone says mikroOrm (installed in the module's onModuleInit, before the app's hooks). */
    async function start(async = false): Promise<void> {
      @Module({
        imports: [
          MikroOrmModule.forRoot({
            driver: (backend === 'postgres' ? PostgreSqlDriver : MariaDbDriver) as never,
            clientUrl,
            dbName: new URL(clientUrl).pathname.slice(1),
            entities: [NkUser, NkOrder],
            pool: { min: 0, max: POOL },
            allowGlobalContext: false,
            debug: false,
          } as Options),
          MikroOrmModule.forFeature([NkOrder]),
          async
            ? OrmlockModule.forRootAsync({ useFactory: async () => ({ mikroOrm: true, namespace: 'nest-mikro-async' }) })
            : OrmlockModule.forRoot({ mikroOrm: true, namespace: 'nest-mikro' }),
        ],
        controllers: [MikroController],
        providers: [MikroNestBilling],
      })
      class MikroApp {}
      app = (await Test.createTestingModule({ imports: [MikroApp] }).compile()).createNestApplication({ logger: false });
      await app.listen(0, '127.0.0.1');
      url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    }

    before(async function () {
      const ds = await dataSourceOptions(backend, []);
      if (!ds) return this.skip();
      clientUrl = (ds as { url: string }).url;
      await start();
      await app!.get(MikroORM).schema.refreshDatabase();
    });

    after(async () => {
      await app?.close();
      expect(liveInstallations(), 'nothing stays installed after app.close()').to.have.length(0);
    });

    const post = async (path: string) => {
      const res = await fetch(`${url}${path}`, { method: 'POST' });
      const text = await res.text();
      return { status: res.status, text, json: text ? JSON.parse(text) : undefined };
    };

    /** `allRead` (the control only): chargeUnlocked waits on it after its reads. */
    async function chargeConcurrently(mode: 'unlocked' | 'pessimistic', allRead?: Barrier) {
      const { json } = await post('/mikro/seed');
      const { userId, orderIds } = json as { userId: number; orderIds: number[] };
      const billing = app!.get(MikroNestBilling);
      billing.allRead = allRead;
      let results;
      try {
        results = await race(N, (i) => post(`/mikro/charge/${mode}/${userId}/${orderIds[i]}`));
      } finally {
        billing.allRead = undefined;
      }
      const failed = results
        .map((r) => (r.status === 'fulfilled' ? (r.value.status === 204 ? null : `${r.value.status} ${r.value.text}`) : String(r.reason)))
        .filter(Boolean);
      const credits = (await post(`/mikro/credits/${userId}`)).json.credits as number;
      return { credits, failed };
    }

    it('installs on the MikroORM instance of @mikro-orm/nestjs', () => {
      const all = app!.get(OrmlockInstallations).all;
      expect(all.map((i) => `${i.kind}:${i.name}`)).to.deep.equal(['mikro-orm:default']);
      expect(all[0].target).to.equal(app!.get(MikroORM));
    });

    it('control: 20 concurrent POSTs, the same body under a plain @Transactional(), lose charges', async () => {
      const { credits, failed } = await chargeConcurrently('unlocked', new Barrier(K));
      expect(failed).to.deep.equal([]);
      expect(credits, `at least ${K - 1} lost charges expected without a lock`).to.be.at.least(CONTROL_FLOOR);
    });

    it('@Pessimistic() with the injected EntityManager and EntityRepository: 20 concurrent POSTs, credits exact', async () => {
      const { credits, failed } = await chargeConcurrently('pessimistic');
      expect(failed).to.deep.equal([]);
      expect(credits).to.equal(START - N * PRICE);
    });

    it('close and create the application 3 times (forRootAsync and forRoot): nothing stays installed, the fourth serves exact credits', async () => {
      for (let i = 0; i < 3; i++) {
        await app!.close();
        app = undefined;
        expect(liveInstallations(), 'no installation left by a closed app').to.have.length(0);
        await start(i % 2 === 0);
        const all = app!.get(OrmlockInstallations).all;
        expect(all).to.have.length(1);
        expect(all[0].handle.installation.settings.namespace).to.equal(i % 2 === 0 ? 'nest-mikro-async' : 'nest-mikro');
      }
      const { credits, failed } = await chargeConcurrently('pessimistic');
      expect(failed).to.deep.equal([]);
      expect(credits).to.equal(START - N * PRICE);
    });
  });
}
