/**
 * A scheduled job with NestJS (`@Cron` from @nestjs/schedule) and ormlock's `@ScheduledLock`:
 * three instances of the application run the same every-second job against one database; with
 * the lock each tick runs on one instance, without it (the control) on all three.
 *
 *   npx ts-node --transpile-only examples/nestjs/scheduled.ts [--seconds 4]
 *
 * Database: DATABASE_URL (postgres://… or mysql://…, mariadb://…), else PG_URL, else a
 * throw-away embedded PostgreSQL. Prints one row per second and exits 0 when every second ran
 * the locked job exactly once.
 */
import 'reflect-metadata';
import { Module, type DynamicModule, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { TypeOrmModule, getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource, DataSourceOptions } from 'typeorm';
import { OrmlockModule } from '../../src/nestjs'; // in your app: from 'ormlock/nestjs'
import { startEmbeddedPostgres } from '../embedded-postgres';
import { ReportJob, ReportRun } from './report.job';

const INSTANCES = 3;
const secondsArg = process.argv.indexOf('--seconds');
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 4;

/** One instance of the application: TypeORM, ormlock, the scheduler and the job. */
function instanceModule(databaseUrl: string, instance: number): DynamicModule {
  const url = new URL(databaseUrl);
  const type = url.protocol.startsWith('postgres') ? 'postgres' : 'mariadb';
  if (type === 'mariadb') url.protocol = 'mysql:';
  @Module({})
  class InstanceModule {}
  return {
    module: InstanceModule,
    imports: [
      TypeOrmModule.forRoot({
        type,
        url: url.toString(),
        entities: [ReportRun],
        synchronize: instance === 1, // an example: use migrations in your app
        poolSize: 5,
      } as DataSourceOptions),
      OrmlockModule.forRoot(),
      ScheduleModule.forRoot(),
    ],
    providers: [{ provide: ReportJob, useFactory: (ds: DataSource) => new ReportJob(ds, instance), inject: [getDataSourceToken()] }],
  };
}

async function main(): Promise<void> {
  let databaseUrl = process.env.DATABASE_URL ?? process.env.PG_URL;
  const embedded = databaseUrl ? undefined : await startEmbeddedPostgres();
  databaseUrl ??= embedded!.url;

  const apps: INestApplicationContext[] = [];
  for (let i = 1; i <= INSTANCES; i++) {
    // logger: errors only (several instances in one process share Nest's DataSource name registry, which warns)
    const app = await NestFactory.createApplicationContext(instanceModule(databaseUrl, i), { logger: ['error'] });
    if (i === 1) await app.get(ReportJob).dataSource.getRepository(ReportRun).clear();
    apps.push(app);
  }
  // count only the seconds during which every instance was running
  const from = Math.ceil(Date.now() / 1000) + 1;
  await new Promise((r) => setTimeout(r, (from + SECONDS) * 1000 - Date.now() + 300));
  const to = from + SECONDS;
  const runs = await apps[0].get(ReportJob).dataSource.getRepository(ReportRun).find();
  for (const app of apps) await app.close();
  await embedded?.stop();

  const header = ['second', "@ScheduledLock('report') runs", `control runs (no lock, ${INSTANCES} instances)`];
  const rows: string[][] = [];
  let ok = true;
  for (let s = from; s < to; s++) {
    const count = (job: string) => runs.filter((r) => r.job === job && Number(r.second) === s).length;
    if (count('report') !== 1) ok = false;
    rows.push([new Date(s * 1000).toISOString().slice(11, 19), String(count('report')), String(count('control'))]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log([line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n'));
  console.log(ok ? 'every second: the locked job ran exactly once' : 'a second did not run the locked job exactly once');
  process.exit(ok ? 0 : 1);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
