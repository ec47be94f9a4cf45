/**
 * ormlock/nestjs with @mikro-orm/nestjs (`mikroOrm: true`): a real HTTP server and 20 concurrent
 * POSTs on a barrier, on PostgreSQL and MariaDB. A provider with the injected `EntityManager` and
 * an `EntityRepository`: `@Pessimistic()` leaves exact credits, the same body under a plain
 * `@Transactional()` loses charges.
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
import { race } from '../src/testing';
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
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

@Injectable()
class MikroNestBilling {
  constructor(
    @Inject(EntityManager) private readonly em: EntityManager,
    @InjectRepository(NkOrder) private readonly orders: EntityRepository<NkOrder>,
  ) {}

  private async chargeBody(userId: number, orderId: number): Promise<void> {
    const user = await this.em.findOneOrFail(NkUser, userId);
    const order = await this.orders.findOneOrFail(orderId);
    await sleep(GAP_MS);
    user.credits -= order.price;
    order.paid = true;
    await this.em.flush();
  }

  @Transactional()
  async chargeUnlocked(userId: number, orderId: number): Promise<void> {
    await this.chargeBody(userId, orderId);
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
            pool: { min: 0, max: 12 },
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

    async function chargeConcurrently(mode: 'unlocked' | 'pessimistic') {
      const { json } = await post('/mikro/seed');
      const { userId, orderIds } = json as { userId: number; orderIds: number[] };
      const results = await race(N, (i) => post(`/mikro/charge/${mode}/${userId}/${orderIds[i]}`));
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
      const { credits, failed } = await chargeConcurrently('unlocked');
      expect(failed).to.deep.equal([]);
      expect(credits, 'lost charges expected without a lock').to.be.greaterThan(START - N * PRICE);
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
