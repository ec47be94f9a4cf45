import 'reflect-metadata';
import { Controller, Get, Module, Param, type INestApplication } from '@nestjs/common';
import { APP_FILTER, HttpAdapterHost } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { expect } from 'chai';
import {
  DeadlockError,
  LockConfigError,
  LockError,
  LockLostError,
  LockNotAvailableError,
  LockTimeoutError,
  PoolExhaustedError,
  SerializationError,
  StaleEntityError,
  TransactionRequiredError,
  UniqueViolationError,
} from '../src';
import { ORMLOCK_EXCEPTION_FILTER_OPTIONS, OrmlockExceptionFilter, ormlockHttpStatus } from '../src/nestjs';

/** ormlock/nestjs's opt-in exception filter: ormlock's errors become 409, 503 + Retry-After, or a generic 500, over real HTTP. */
const errors: Record<string, () => LockError> = {
  stale: () => new StaleEntityError('Account 1 was changed since it was loaded (version 3, now 4)', { entity: 'Account', id: 1 }),
  unavailable: () => new LockNotAvailableError('lock on Account 1 not available'),
  unique: () => new UniqueViolationError('duplicate email'),
  deadlock: () => new DeadlockError('deadlock detected'),
  serialization: () => new SerializationError('could not serialize access'),
  timeout: () => new LockTimeoutError('lock on Account 1 not acquired within 50 ms', { waitedMs: 50 }),
  pool: () => new PoolExhaustedError('no connection within 1000 ms'),
  lost: () => new LockLostError('Redis lease lost'),
  config: () => new LockConfigError('@Pessimistic on Billing.charge: secret detail'),
  required: () => new TransactionRequiredError('lock() needs a transaction'),
};

@Controller()
class Failing {
  @Get('fail/:kind')
  fail(@Param('kind') kind: string): never {
    throw errors[kind]();
  }
  @Get('plain')
  plain(): never {
    throw new Error('not ours');
  }
}

async function start(register: 'provider' | 'global', retryAfterSeconds?: number): Promise<{ app: INestApplication; url: string }> {
  const providers: any[] = register === 'provider' ? [{ provide: APP_FILTER, useClass: OrmlockExceptionFilter }] : [];
  if (retryAfterSeconds !== undefined) providers.push({ provide: ORMLOCK_EXCEPTION_FILTER_OPTIONS, useValue: { retryAfterSeconds } });
  @Module({ controllers: [Failing], providers })
  class App {}
  const app = (await Test.createTestingModule({ imports: [App] }).compile()).createNestApplication({ logger: false });
  if (register === 'global') app.useGlobalFilters(new OrmlockExceptionFilter(app.get(HttpAdapterHost)));
  await app.listen(0, '127.0.0.1');
  return { app, url: await app.getUrl() };
}

describe('ormlock/nestjs OrmlockExceptionFilter', () => {
  it('maps each error kind: 409 conflicts, 503 + Retry-After for timeouts and lost locks, 500 for the rest', () => {
    const status = (k: string) => ormlockHttpStatus(errors[k]());
    for (const k of ['stale', 'unavailable', 'unique', 'deadlock', 'serialization']) expect(status(k), k).to.deep.equal({ status: 409 });
    for (const k of ['timeout', 'pool', 'lost']) expect(status(k), k).to.deep.equal({ status: 503, retryAfterSeconds: 1 });
    for (const k of ['config', 'required']) expect(status(k), k).to.deep.equal({ status: 500 });
  });

  for (const register of ['provider', 'global'] as const) {
    it(`over HTTP (${register === 'provider' ? 'APP_FILTER provider' : 'app.useGlobalFilters'}): statuses, bodies and Retry-After; other errors stay Nest's`, async () => {
      const { app, url } = await start(register);
      try {
        const stale = await fetch(`${url}/fail/stale`);
        expect(stale.status).to.equal(409);
        expect(await stale.json()).to.deep.equal({
          statusCode: 409,
          error: 'Conflict',
          code: 'STALE_ENTITY',
          message: 'Account 1 was changed since it was loaded (version 3, now 4)',
        });
        expect(stale.headers.get('retry-after')).to.equal(null);
        for (const k of ['unavailable', 'unique', 'deadlock', 'serialization']) expect((await fetch(`${url}/fail/${k}`)).status, k).to.equal(409);

        const timeout = await fetch(`${url}/fail/timeout`);
        expect(timeout.status).to.equal(503);
        expect(timeout.headers.get('retry-after')).to.equal('1');
        expect(await timeout.json()).to.include({ statusCode: 503, error: 'Service Unavailable', code: 'LOCK_TIMEOUT' });
        for (const k of ['pool', 'lost']) expect((await fetch(`${url}/fail/${k}`)).status, k).to.equal(503);

        const config = await fetch(`${url}/fail/config`);
        expect(config.status).to.equal(500);
        expect(await config.text(), 'a 500 does not leak the message').to.not.contain('secret detail');
        expect((await fetch(`${url}/plain`)).status, "an error that is not ormlock's: Nest's own 500").to.equal(500);
      } finally {
        await app.close();
      }
    });
  }

  it('Retry-After comes from ORMLOCK_EXCEPTION_FILTER_OPTIONS', async () => {
    const { app, url } = await start('provider', 7);
    try {
      const res = await fetch(`${url}/fail/timeout`);
      expect(res.status).to.equal(503);
      expect(res.headers.get('retry-after')).to.equal('7');
    } finally {
      await app.close();
    }
  });
});
