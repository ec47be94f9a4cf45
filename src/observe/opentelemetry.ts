/**
 * `ormlock/opentelemetry`: lock events as OpenTelemetry spans and metrics.
 *
 * - a span `ormlock.lock` per lock wait (acquired, timeout, not_available), started when the
 *   wait began (event time − waitedMs) and ended when it ended, as a child of the caller's
 *   active span; attributes `ormlock.lock.kind`, `ormlock.lock.target`, `ormlock.lock.outcome`
 *   and `db.system.name`; status ERROR when the lock was not obtained;
 * - histograms `ormlock.lock.wait.duration` and `ormlock.lock.hold.duration` (seconds);
 * - counter `ormlock.lock.failures` (timeouts, locks not available, lost locks).
 * Metric attributes are low-cardinality: kind, outcome and db.system.name, never the target.
 * `@opentelemetry/api` is an optional peer dependency, loaded only by this module.
 *
 * Off the lock path: `onLockEvent` only notes the event, its time and the caller's active context
 * (the span's parent); the spans and records are made in one batch at most `batchMs` later (or
 * when 512 events are waiting). Made in a batch, the SDK's work costs a fraction of what it costs
 * interleaved with the ORM's (its code and data stay in the CPU's caches), and none of it runs
 * while the lock is held. Span times are the events' own, so a batch changes no duration.
 */
import type { Counter, Histogram, MeterProvider, Tracer, TracerProvider } from '@opentelemetry/api';
import type { LockEvent, LockObserver } from './events';
import { badOption, missingPackage } from '../faults/options';

export interface OpenTelemetryOptions {
  /** Default: the global tracer provider (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider;
  /** Default: the global meter provider (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider;
  /** Used as `db.system.name` when an event does not say which database it came from. */
  dbSystem?: 'postgresql' | 'mysql' | 'mariadb';
  /** Spans per lock wait (default true); metrics are recorded either way. */
  spans?: boolean;
  /**
   * Events are turned into spans and records in batches, at most this many ms after they happened
   * (default 100); 0 records each event at once, inside `onLockEvent`.
   */
  batchMs?: number;
}

/** The observer `openTelemetry()` returns. */
export interface OpenTelemetryObserver extends LockObserver {
  /**
   * Records at once the events still waiting for their batch. Call it before shutting the SDK
   * down (`await sdk.shutdown()`) in a process that is about to exit, or before reading an
   * in-memory exporter in a test.
   */
  flush(): void;
}

/** The instrument names, for dashboards and tests. */
export const OTEL_NAMES = {
  span: 'ormlock.lock',
  waitDuration: 'ormlock.lock.wait.duration',
  holdDuration: 'ormlock.lock.hold.duration',
  failures: 'ormlock.lock.failures',
  kind: 'ormlock.lock.kind',
  target: 'ormlock.lock.target',
  outcome: 'ormlock.lock.outcome',
  dbSystem: 'db.system.name',
} as const;

const SCOPE = 'ormlock';
/** Seconds; lock waits range from microseconds (uncontended) to the lock timeout. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

type Api = typeof import('@opentelemetry/api');

/** How long an event may wait for its batch, ms, and how many may wait at most. */
const DEFAULT_BATCH_MS = 100;
const MAX_PENDING = 512;

function loadApi(): Api {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('@opentelemetry/api') as Api;
  } catch {
    throw missingPackage('ormlock/opentelemetry', '@opentelemetry/api');
  }
}

/**
 * An observer for `installLocking(dataSource, { observers: [openTelemetry()] })`
 * (or `{ onLockEvent: (e) => otel.onLockEvent(e) }`). It never throws.
 */
export function openTelemetry(options: OpenTelemetryOptions = {}): OpenTelemetryObserver {
  if (options === null || typeof options !== 'object') throw badOption('openTelemetry', 'options', 'an object', options);
  for (const name of ['tracerProvider', 'meterProvider'] as const) {
    const p = options[name] as unknown as Record<string, unknown> | undefined;
    const method = name === 'tracerProvider' ? 'getTracer' : 'getMeter';
    if (p !== undefined && typeof p?.[method] !== 'function') {
      throw badOption(
        'openTelemetry',
        `options.${name}`,
        `an OpenTelemetry ${name === 'tracerProvider' ? 'TracerProvider' : 'MeterProvider'} (with ${method}())`,
        p,
      );
    }
  }
  const batchMs = options.batchMs ?? DEFAULT_BATCH_MS;
  if (typeof batchMs !== 'number' || !Number.isFinite(batchMs) || batchMs < 0) {
    throw badOption('openTelemetry', 'options.batchMs', 'a non-negative number of ms', options.batchMs);
  }
  const api = loadApi();
  const tracer: Tracer = (options.tracerProvider ?? api.trace.getTracerProvider()).getTracer(SCOPE);
  const meter = (options.meterProvider ?? api.metrics.getMeterProvider()).getMeter(SCOPE);
  const wait: Histogram = meter.createHistogram(OTEL_NAMES.waitDuration, {
    unit: 's',
    description: 'Time spent waiting for a lock',
    advice: { explicitBucketBoundaries: BUCKETS },
  });
  const hold: Histogram = meter.createHistogram(OTEL_NAMES.holdDuration, {
    unit: 's',
    description: 'Time a lock was held',
    advice: { explicitBucketBoundaries: BUCKETS },
  });
  const failures: Counter = meter.createCounter(OTEL_NAMES.failures, {
    unit: '{failure}',
    description: 'Locks not obtained (timeout, not_available) or lost',
  });
  const spans = options.spans !== false;
  const fallbackDb = options.dbSystem;

  // Metric attributes: a handful of combinations, built once each (kind → type → db).
  const attributeSets: Record<string, Record<string, Record<string, Readonly<Record<string, string>>>>> = Object.create(null);
  let attributeSetCount = 0;
  const attributesOf = (e: LockEvent): Readonly<Record<string, string>> => {
    const db = e.db ?? fallbackDb ?? '';
    const byType = (attributeSets[e.kind] ??= Object.create(null));
    const byDb = (byType[e.type] ??= Object.create(null));
    let attrs = byDb[db];
    if (!attrs) {
      const a: Record<string, string> = { [OTEL_NAMES.kind]: String(e.kind), [OTEL_NAMES.outcome]: String(e.type) };
      if (db) a[OTEL_NAMES.dbSystem] = db;
      attrs = Object.freeze(a);
      if (attributeSetCount++ < 256) byDb[db] = attrs;
    }
    return attrs;
  };

  type Ctx = ReturnType<Api['context']['active']>;
  /** One event: `at` is when it happened (ms since the epoch), `ctx` the caller's active context then. */
  const record = (e: LockEvent, at: number, ctx: Ctx) => {
    const attrs = attributesOf(e);
    switch (e.type) {
      case 'acquired':
      case 'timeout':
      case 'not_available': {
        const waitedMs = nonNegative(e.waitedMs);
        wait.record(waitedMs / 1000, attrs, ctx);
        if (e.type !== 'acquired') failures.add(1, attrs, ctx);
        if (spans) {
          const span = tracer.startSpan(
            OTEL_NAMES.span,
            { kind: api.SpanKind.INTERNAL, startTime: at - waitedMs, attributes: Object.assign({ [OTEL_NAMES.target]: String(e.target) }, attrs) },
            ctx,
          );
          if (e.type !== 'acquired') span.setStatus({ code: api.SpanStatusCode.ERROR, message: `lock ${e.type}` });
          span.end(at);
        }
        return;
      }
      case 'released':
        if (e.heldMs !== undefined) hold.record(nonNegative(e.heldMs) / 1000, attrs, ctx);
        return;
      case 'lost':
        failures.add(1, attrs, ctx);
        return;
    }
  };
  const recordSafely = (e: LockEvent, at: number, ctx: Ctx) => {
    try {
      record(e, at, ctx);
    } catch {
      /* telemetry must never break locking */
    }
  };

  // Waiting events, three slots each: event, time, context (one flat array, no object per event).
  const pending: unknown[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    for (let i = 0; i < pending.length; i += 3) recordSafely(pending[i] as LockEvent, pending[i + 1] as number, pending[i + 2] as Ctx);
    pending.length = 0;
  };
  const contextApi = api.context;

  return {
    onLockEvent(event: LockEvent): void {
      try {
        if (event === null || typeof event !== 'object') return;
        if (batchMs === 0) return recordSafely(event, Date.now(), contextApi.active());
        pending.push(event, Date.now(), contextApi.active());
        if (pending.length >= 3 * MAX_PENDING) flush();
        else if (timer === undefined) {
          timer = setTimeout(flush, batchMs);
          timer.unref?.();
        }
      } catch {
        /* telemetry must never break locking */
      }
    },
    flush,
  };
}

function nonNegative(ms: number | undefined): number {
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? ms : 0;
}
