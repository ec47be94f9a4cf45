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
 */
import type { Counter, Histogram, MeterProvider, Tracer, TracerProvider } from '@opentelemetry/api';
import { LockConfigError } from '../errors';
import type { LockEvent, LockObserver } from './events';

export interface OpenTelemetryOptions {
  /** Default: the global tracer provider (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider;
  /** Default: the global meter provider (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider;
  /** Used as `db.system.name` when an event does not say which database it came from. */
  dbSystem?: 'postgresql' | 'mysql' | 'mariadb';
  /** Spans per lock wait (default true); metrics are recorded either way. */
  spans?: boolean;
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

function loadApi(): Api {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('@opentelemetry/api') as Api;
  } catch {
    throw new LockConfigError("ormlock/opentelemetry needs the '@opentelemetry/api' package: npm install @opentelemetry/api");
  }
}

/**
 * An observer for `installLocking(dataSource, { observers: [openTelemetry()] })`
 * (or `{ onLockEvent: (e) => otel.onLockEvent(e) }`). It never throws.
 */
export function openTelemetry(options: OpenTelemetryOptions = {}): LockObserver {
  if (options === null || typeof options !== 'object') throw new LockConfigError('openTelemetry: options must be an object');
  for (const name of ['tracerProvider', 'meterProvider'] as const) {
    const p = options[name] as unknown as Record<string, unknown> | undefined;
    const method = name === 'tracerProvider' ? 'getTracer' : 'getMeter';
    if (p !== undefined && typeof p?.[method] !== 'function') {
      throw new LockConfigError(`openTelemetry: options.${name} must be an OpenTelemetry ${name === 'tracerProvider' ? 'TracerProvider' : 'MeterProvider'} (with ${method}())`);
    }
  }
  const api = loadApi();
  const tracer: Tracer = (options.tracerProvider ?? api.trace.getTracerProvider()).getTracer(SCOPE);
  const meter = (options.meterProvider ?? api.metrics.getMeterProvider()).getMeter(SCOPE);
  const wait: Histogram = meter.createHistogram(OTEL_NAMES.waitDuration, {
    unit: 's', description: 'Time spent waiting for a lock', advice: { explicitBucketBoundaries: BUCKETS },
  });
  const hold: Histogram = meter.createHistogram(OTEL_NAMES.holdDuration, {
    unit: 's', description: 'Time a lock was held', advice: { explicitBucketBoundaries: BUCKETS },
  });
  const failures: Counter = meter.createCounter(OTEL_NAMES.failures, {
    unit: '{failure}', description: 'Locks not obtained (timeout, not_available) or lost',
  });
  const spans = options.spans !== false;
  const fallbackDb = options.dbSystem;

  // Metric attributes: a handful of combinations, built once each (the hot path allocates none).
  const attributeSets = new Map<string, Readonly<Record<string, string>>>();
  const attributesOf = (e: LockEvent): Readonly<Record<string, string>> => {
    const db = e.db ?? fallbackDb;
    const id = `${e.kind}\u0000${e.type}\u0000${db ?? ''}`;
    let attrs = attributeSets.get(id);
    if (!attrs) {
      const a: Record<string, string> = { [OTEL_NAMES.kind]: String(e.kind), [OTEL_NAMES.outcome]: String(e.type) };
      if (db) a[OTEL_NAMES.dbSystem] = db;
      attrs = Object.freeze(a);
      if (attributeSets.size < 256) attributeSets.set(id, attrs);
    }
    return attrs;
  };

  const record = (e: LockEvent) => {
    const attrs = attributesOf(e);
    switch (e.type) {
      case 'acquired':
      case 'timeout':
      case 'not_available': {
        const waitedMs = nonNegative(e.waitedMs);
        wait.record(waitedMs / 1000, attrs);
        if (e.type !== 'acquired') failures.add(1, attrs);
        if (spans) {
          const end = Date.now();
          const span = tracer.startSpan(
            OTEL_NAMES.span,
            { kind: api.SpanKind.INTERNAL, startTime: end - waitedMs, attributes: Object.assign({ [OTEL_NAMES.target]: String(e.target) }, attrs) },
            api.context.active(),
          );
          if (e.type !== 'acquired') span.setStatus({ code: api.SpanStatusCode.ERROR, message: `lock ${e.type}` });
          span.end(end);
        }
        return;
      }
      case 'released':
        if (e.heldMs !== undefined) hold.record(nonNegative(e.heldMs) / 1000, attrs);
        return;
      case 'lost':
        failures.add(1, attrs);
        return;
    }
  };

  return {
    onLockEvent(event: LockEvent): void {
      try {
        record(event);
      } catch {
        /* telemetry must never break locking */
      }
    },
  };
}

function nonNegative(ms: number | undefined): number {
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? ms : 0;
}
