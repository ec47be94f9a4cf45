/**
 * A NestJS application using ormlock/nestjs — copy it as a start.
 *
 *   npm run example:nestjs                # serves on PORT (default 3000) until Ctrl-C
 *   npm run example:nestjs -- --demo      # 20 concurrent charges over HTTP per lock, a table, exit
 *
 * Database: DATABASE_URL (postgres://… or mysql://…, mariadb://…), else PG_URL, else a throw-away
 * embedded PostgreSQL. REDIS_URL (comma-separated for several nodes) enables `?lock=lease`.
 *
 *   curl -X POST localhost:3000/accounts -H 'content-type: application/json' -d '{"credits":100,"orders":5,"price":10}'
 *   curl -X POST 'localhost:3000/accounts/1/orders/1/charge?lock=row'
 *   curl localhost:3000/accounts/1
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { INestApplication } from '@nestjs/common';
import { race } from '../../src/testing'; // in your app: from 'ormlock/testing'
import { startEmbeddedPostgres, type EmbeddedPg } from '../embedded-postgres';
import { appModule } from './app.module';
import type { ChargeMode } from './billing.service';

const demo = process.argv.includes('--demo');
const CONCURRENT = 20;
const PRICE = 10;
const START = 1000;

async function databaseUrl(): Promise<{ url: string; embedded?: EmbeddedPg }> {
  const given = process.env.DATABASE_URL ?? process.env.PG_URL;
  if (given) return { url: given };
  console.log('no DATABASE_URL or PG_URL: starting an embedded PostgreSQL…');
  const embedded = await startEmbeddedPostgres();
  return { url: embedded.url, embedded };
}

async function post(base: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** 20 concurrent charges of one account, all started at once; what is left and what failed. */
async function chargeConcurrently(base: string, lock: ChargeMode) {
  const opened = (await (await post(base, '/accounts', { credits: START, orders: CONCURRENT, price: PRICE })).json()) as {
    account: { id: number };
    orderIds: number[];
  };
  const id = opened.account.id;
  const results = await race(CONCURRENT, (i) => post(base, `/accounts/${id}/orders/${opened.orderIds[i]}/charge?lock=${lock}`));
  const failed = results.filter((r) => r.status === 'rejected' || r.value.status !== 204);
  const { credits } = (await (await fetch(`${base}/accounts/${id}`)).json()) as { credits: number };
  return { credits, lost: (credits - (START - CONCURRENT * PRICE)) / PRICE, failed: failed.length };
}

async function runDemo(app: INestApplication, base: string, withRedis: boolean): Promise<boolean> {
  const modes: ChargeMode[] = withRedis ? ['none', 'row', 'advisory', 'lease'] : ['none', 'row', 'advisory'];
  const rows: string[][] = [];
  let ok = true;
  for (const lock of modes) {
    const r = await chargeConcurrently(base, lock);
    rows.push([lock, String(CONCURRENT), String(r.credits), String(r.lost), String(r.failed)]);
    if (lock !== 'none' && (r.lost !== 0 || r.failed !== 0)) ok = false;
  }
  const header = ['lock', 'concurrent charges', 'credits left (expected 800)', 'charges lost', 'failed requests'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log([line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n'));
  if (!withRedis) console.log('(set REDIS_URL to see lock=lease too)');
  await app.close();
  return ok;
}

async function main(): Promise<void> {
  const { url, embedded } = await databaseUrl();
  const redisUrls = (process.env.REDIS_URL ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const app = await NestFactory.create(appModule({ databaseUrl: url, redisUrls }), { logger: demo ? ['error', 'warn'] : undefined, abortOnError: false });
  app.enableShutdownHooks(); // Ctrl-C closes the app: ormlock uninstalls, the Redis clients quit
  const port = demo ? 0 : Number(process.env.PORT ?? 3000);
  await app.listen(port, '127.0.0.1');
  const base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  if (!demo) {
    console.log(`listening on ${base} (POST /accounts, POST /accounts/:id/orders/:orderId/charge?lock=none|row|advisory|lease, GET /accounts/:id)`);
    if (embedded) console.log('(the embedded PostgreSQL and its data go away when the app exits)');
    return;
  }
  const ok = await runDemo(app, base, redisUrls.length > 0);
  await embedded?.stop();
  process.exit(ok ? 0 : 1);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
