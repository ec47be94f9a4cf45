import { expect } from 'chai';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, trace, type Context, type ContextManager } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import { LockConfigError, currentManager, lock, transaction, withAdvisoryLock, type LockEvent, type LockObserver } from '../src';
import { runInFrame } from '../src/context/store';
import { OTEL_NAMES, openTelemetry, type OpenTelemetryObserver, type OpenTelemetryOptions } from '../src/observe/opentelemetry';
import { race } from '../src/testing';
import { InspectAccount } from './fixtures/inspect-account';
import { describeEachBackend, sleep } from './support/suite';

const NS = `otel-${process.env.ORMLOCK_TEST_DB}`;

/** An OpenTelemetry SDK whose spans and metrics stay in memory. */
function sdk() {
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  return {
    tracerProvider,
    meterProvider,
    spans: (): ReadableSpan[] => spans.getFinishedSpans(),
    async metrics(): Promise<Map<string, MetricData>> {
      await reader.forceFlush();
      const last = exporter.getMetrics().at(-1);
      return new Map((last?.scopeMetrics ?? []).flatMap((s) => s.metrics).map((m) => [m.descriptor.name, m]));
    },
    async shutdown() {
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
    },
  };
}

const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
const points = (m: MetricData | undefined) => (m?.dataPoints ?? []) as Array<{ attributes: Record<string, unknown>; value: any }>;

/** A minimal synchronous context manager, so that `context.with` makes a span the active parent. */
class StackContextManager implements ContextManager {
  private stack: Context[] = [];
  active() {
    return this.stack.at(-1) ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    this.stack.push(ctx);
    try {
      return fn.call(thisArg, ...args);
    } finally {
      this.stack.pop();
    }
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable() {
    return this;
  }
  disable() {
    this.stack = [];
    return this;
  }
}

describe('ormlock/opentelemetry (events fed by hand)', () => {
  let s: ReturnType<typeof sdk>;
  let otel: OpenTelemetryObserver;
  beforeEach(() => {
    s = sdk();
    otel = openTelemetry({ tracerProvider: s.tracerProvider, meterProvider: s.meterProvider });
  });
  afterEach(() => s.shutdown());

  it('an acquired lock is one span ormlock.lock from the start of the wait to its end, with kind, target and db.system.name', async () => {
    const before = Date.now();
    otel.onLockEvent({ type: 'acquired', kind: 'advisory', target: 'S3Worker-Lock', waitedMs: 120, db: 'postgresql' });
    otel.flush();
    const [span] = s.spans();
    expect(s.spans()).to.have.length(1);
    expect(span.name).to.equal('ormlock.lock');
    expect(span.kind).to.equal(SpanKind.INTERNAL);
    expect(span.attributes).to.deep.equal({
      'ormlock.lock.kind': 'advisory',
      'ormlock.lock.target': 'S3Worker-Lock',
      'ormlock.lock.outcome': 'acquired',
      'db.system.name': 'postgresql',
    });
    expect(ms(span.duration)).to.be.closeTo(120, 1);
    expect(ms(span.startTime)).to.be.closeTo(before - 120, 50);
    expect(span.status.code).to.equal(SpanStatusCode.UNSET);

    const m = await s.metrics();
    const wait = m.get('ormlock.lock.wait.duration')!;
    expect(wait.descriptor.unit).to.equal('s');
    expect(points(wait)).to.have.length(1);
    expect(points(wait)[0].attributes).to.deep.equal({ 'ormlock.lock.kind': 'advisory', 'ormlock.lock.outcome': 'acquired', 'db.system.name': 'postgresql' });
    expect(points(wait)[0].value.count).to.equal(1);
    expect(points(wait)[0].value.sum).to.be.closeTo(0.12, 1e-9);
  });

  it('hold times go to ormlock.lock.hold.duration; timeouts, locks not available and lost locks count in ormlock.lock.failures', async () => {
    const events: LockEvent[] = [
      { type: 'released', kind: 'row', target: 'Account', heldMs: 250, db: 'mariadb' },
      { type: 'released', kind: 'row', target: 'Account', heldMs: 750, db: 'mariadb' },
      { type: 'timeout', kind: 'row', target: 'Account', waitedMs: 1000, db: 'mariadb' },
      { type: 'not_available', kind: 'advisory', target: 'k', waitedMs: 0, db: 'mariadb' },
      { type: 'lost', kind: 'lease', target: 'job:1' },
    ];
    for (const e of events) otel.onLockEvent(e);
    otel.flush();
    const m = await s.metrics();
    const hold = points(m.get('ormlock.lock.hold.duration'));
    expect(m.get('ormlock.lock.hold.duration')!.descriptor.unit).to.equal('s');
    expect(hold).to.have.length(1);
    expect(hold[0].value).to.include({ count: 2, sum: 1 });
    expect(hold[0].attributes).to.deep.equal({ 'ormlock.lock.kind': 'row', 'ormlock.lock.outcome': 'released', 'db.system.name': 'mariadb' });
    const failures = points(m.get('ormlock.lock.failures')).map((p) => [p.attributes['ormlock.lock.outcome'], p.attributes['ormlock.lock.kind'], p.value]);
    expect(failures).to.have.deep.members([
      ['timeout', 'row', 1],
      ['not_available', 'advisory', 1],
      ['lost', 'lease', 1],
    ]);
    // a failed wait is still a span, marked as an error; a release or a loss is not a wait
    const spans = s.spans();
    expect(spans.map((x) => x.attributes['ormlock.lock.outcome'])).to.deep.equal(['timeout', 'not_available']);
    expect(spans.map((x) => x.status.code)).to.deep.equal([SpanStatusCode.ERROR, SpanStatusCode.ERROR]);
    expect(ms(spans[0].duration)).to.be.closeTo(1000, 1);
  });

  it("the span is a child of the caller's active span; metrics never carry the target (low cardinality)", async () => {
    const manager = new StackContextManager();
    context.setGlobalContextManager(manager);
    try {
      const parent = s.tracerProvider.getTracer('app').startSpan('request');
      context.with(trace.setSpan(context.active(), parent), () => {
        otel.onLockEvent({ type: 'acquired', kind: 'row', target: 'Account', waitedMs: 3 });
      });
      parent.end();
      otel.flush(); // after the caller's context ended: the parent is the one active at the event
      const lockSpan = s.spans().find((x) => x.name === 'ormlock.lock')!;
      expect(lockSpan.parentSpanContext?.spanId).to.equal(parent.spanContext().spanId);
      expect(lockSpan.spanContext().traceId).to.equal(parent.spanContext().traceId);
    } finally {
      context.disable();
    }
    for (const target of ['a', 'b', 'c']) otel.onLockEvent({ type: 'acquired', kind: 'row', target, waitedMs: 1 });
    otel.flush();
    const wait = points((await s.metrics()).get('ormlock.lock.wait.duration'));
    expect(wait).to.have.length(1);
    expect(wait[0].attributes).to.not.have.property('ormlock.lock.target');
  });

  it('records off the lock path: nothing during onLockEvent, everything within batchMs, with the times of the events', async () => {
    const o = openTelemetry({ tracerProvider: s.tracerProvider, meterProvider: s.meterProvider, batchMs: 40 });
    const at = Date.now();
    o.onLockEvent({ type: 'acquired', kind: 'row', target: 'Account', waitedMs: 10, db: 'postgresql' });
    o.onLockEvent({ type: 'released', kind: 'row', target: 'Account', heldMs: 5, db: 'postgresql' });
    expect(s.spans(), 'no SDK work inside onLockEvent').to.have.length(0);
    await sleep(150);
    const [span] = s.spans();
    expect(s.spans()).to.have.length(1);
    expect(ms(span.startTime), 'the span starts when the wait began, not when the batch ran').to.be.closeTo(at - 10, 20);
    expect(ms(span.duration)).to.be.closeTo(10, 1);
    const m = await s.metrics();
    expect(points(m.get('ormlock.lock.hold.duration'))[0].value).to.include({ count: 1 });
  });

  it('batchMs: 0 records each event inside onLockEvent; 512 waiting events are recorded at once without waiting for the timer', () => {
    const direct = openTelemetry({ tracerProvider: s.tracerProvider, meterProvider: s.meterProvider, batchMs: 0 });
    direct.onLockEvent({ type: 'acquired', kind: 'row', target: 'A', waitedMs: 1 });
    expect(s.spans()).to.have.length(1);
    const batched = openTelemetry({ tracerProvider: s.tracerProvider, meterProvider: s.meterProvider, batchMs: 3_600_000 });
    for (let i = 0; i < 511; i++) batched.onLockEvent({ type: 'acquired', kind: 'row', target: 'B', waitedMs: 1 });
    expect(s.spans()).to.have.length(1);
    batched.onLockEvent({ type: 'acquired', kind: 'row', target: 'B', waitedMs: 1 });
    expect(s.spans()).to.have.length(513);
    batched.flush();
    expect(s.spans()).to.have.length(513);
  });

  it('never throws, even when the SDK does, and rejects bad options with a LockConfigError', () => {
    const broken = {
      getTracer: () => ({
        startSpan: () => {
          throw new Error('tracer down');
        },
      }),
    } as unknown as OpenTelemetryOptions['tracerProvider'];
    const o = openTelemetry({ tracerProvider: broken, meterProvider: s.meterProvider });
    expect(() => o.onLockEvent({ type: 'acquired', kind: 'row', target: 'x', waitedMs: 1 })).to.not.throw();
    expect(() => o.onLockEvent(null as any)).to.not.throw();
    expect(() => o.flush()).to.not.throw();
    const direct = openTelemetry({ tracerProvider: broken, meterProvider: s.meterProvider, batchMs: 0 });
    expect(() => direct.onLockEvent({ type: 'acquired', kind: 'row', target: 'x', waitedMs: 1 })).to.not.throw();
    for (const batchMs of [-1, NaN, Infinity, '5']) {
      expect(() => openTelemetry({ batchMs: batchMs as any }), String(batchMs)).to.throw(
        LockConfigError,
        /options\.batchMs must be a non-negative number of ms/,
      );
    }
    expect(() => openTelemetry({ tracerProvider: {} as any })).to.throw(LockConfigError, /options\.tracerProvider must be an OpenTelemetry TracerProvider/);
    expect(() => openTelemetry({ meterProvider: 'x' as any })).to.throw(LockConfigError, /options\.meterProvider/);
  });
});

/** The observer the installation calls; each test puts a fresh SDK behind it. */
let observer: LockObserver | undefined;

describeEachBackend(
  'ormlock/opentelemetry as the onLockEvent of installLocking',
  [InspectAccount],
  (env) => {
    const outside = <T>(fn: () => Promise<T>) => runInFrame({ txs: new Map(), values: new Map() }, fn);
    const dbSystem = (): 'postgresql' | 'mariadb' => (env.name === 'postgres' ? 'postgresql' : 'mariadb');

    it('contended row locks and advisory locks become spans and metrics with the documented names and attributes', async function () {
      this.timeout(60_000);
      const s = sdk();
      const otel = openTelemetry({ tracerProvider: s.tracerProvider, meterProvider: s.meterProvider, dbSystem: dbSystem() });
      observer = otel;
      try {
        const repo = env.ds.getRepository(InspectAccount);
        const { id } = await repo.save(repo.create({ balance: 0 }));
        const workers = 4;
        const results = await race(workers, () =>
          outside(() =>
            transaction(async () => {
              const a = await lock(await currentManager().findOneByOrFail(InspectAccount, { id }));
              await sleep(30); // hold the row: the others wait for it
              a.balance += 1;
              await currentManager().save(a);
            }),
          ),
        );
        expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
        expect((await repo.findOneByOrFail({ id })).balance).to.equal(workers);

        // an advisory lock, and a caller that cannot get it at once
        let refused: unknown;
        await withAdvisoryLock(
          'S3Worker-Lock',
          async () => {
            refused = await outside(() => withAdvisoryLock('S3Worker-Lock', async () => 'got it', { scope: 'session', timeoutMs: 0 })).catch((e) => e);
          },
          { scope: 'session' },
        );
        expect(refused).to.be.instanceOf(Error);

        otel.flush();
        const spans = s.spans().filter((x) => x.name === OTEL_NAMES.span);
        const rowSpans = spans.filter((x) => x.attributes['ormlock.lock.kind'] === 'row');
        expect(rowSpans).to.have.length(workers);
        for (const x of rowSpans) {
          expect(x.attributes).to.include({ 'ormlock.lock.target': 'InspectAccount', 'ormlock.lock.outcome': 'acquired', 'db.system.name': dbSystem() });
        }
        const adv = spans.filter((x) => x.attributes['ormlock.lock.kind'] === 'advisory');
        expect(adv.map((x) => [x.attributes['ormlock.lock.target'], x.attributes['ormlock.lock.outcome'], x.status.code])).to.have.deep.members([
          ['S3Worker-Lock', 'acquired', SpanStatusCode.UNSET],
          ['S3Worker-Lock', 'not_available', SpanStatusCode.ERROR],
        ]);

        const m = await s.metrics();
        const rowWaits = points(m.get('ormlock.lock.wait.duration')).find(
          (p) => p.attributes['ormlock.lock.kind'] === 'row' && p.attributes['ormlock.lock.outcome'] === 'acquired',
        )!;
        expect(rowWaits.attributes['db.system.name']).to.equal(dbSystem());
        expect(rowWaits.value.count).to.equal(workers);
        expect(rowWaits.value.sum, 'the workers behind the first one waited for the row').to.be.greaterThan(0);
        const failures = points(m.get('ormlock.lock.failures'));
        expect(failures.map((p) => [p.attributes['ormlock.lock.kind'], p.attributes['ormlock.lock.outcome'], p.value])).to.deep.equal([
          ['advisory', 'not_available', 1],
        ]);
      } finally {
        observer = undefined;
        await s.shutdown();
      }
    });
  },
  { install: { namespace: NS, onLockEvent: (e) => observer?.onLockEvent(e) } },
);
