import { Module, type DynamicModule } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { DataSourceOptions } from 'typeorm';
import { OrmlockModule } from '../../src/nestjs'; // in your app: from 'ormlock/nestjs'
import { BillingController } from './billing.controller';
import { BillingService } from './billing.service';
import { Account, Order } from './entities';

export interface AppSettings {
  /** postgres://… or mysql://… (mariadb://… picks the MariaDB dialect). */
  databaseUrl: string;
  /** Redis nodes of the lease example (none: lock=lease answers 503). */
  redisUrls: string[];
}

/** The application: TypeORM, ormlock installed on its DataSource, one feature. */
export function appModule(settings: AppSettings): DynamicModule {
  const url = new URL(settings.databaseUrl);
  const type = url.protocol.startsWith('postgres') ? 'postgres' : 'mariadb';
  if (type === 'mariadb') url.protocol = 'mysql:';
  @Module({})
  class AppModule {}
  return {
    module: AppModule,
    imports: [
      TypeOrmModule.forRoot({
        type,
        url: url.toString(),
        entities: [Account, Order],
        synchronize: true, // an example: use migrations in your app
        poolSize: 10, // a @Pessimistic charge holds one connection while it waits for the row
      } as DataSourceOptions),
      TypeOrmModule.forFeature([Account, Order]),
      OrmlockModule.forRoot({
        namespace: 'shop',
        ...(settings.redisUrls.length ? { redis: { nodes: settings.redisUrls } } : {}),
      }),
    ],
    controllers: [BillingController],
    providers: [BillingService],
  };
}
