/**
 * OpenTelemetry traces of the message path, continuing a caller's W3C `traceparent` (and `tracestate`)
 * from the input's AMQP headers into the consumer's spans and on onto the reply's headers.
 *
 * One input, one trace piece: a CONSUMER span `<queue> process` whose parent is the input's traceparent,
 * with a child per stage, each ending where the next begins:
 *   batch (received → cut into a batch) → score (→ scored) → reply (PRODUCER: → published → confirmed)
 *   → ack (→ acked).
 * The reply carries the `reply` span as its traceparent, so whoever reads the reply continues the trace.
 *
 * Off unless the OTEL_* variables say so (config.ts `tracing`): then `startTracing` loads no SDK at all,
 * `begin` returns undefined, and the answer path's `trace?.…` calls cost a property check. The caller's
 * traceparent is still copied onto the reply (`passTraceHeaders`), so a caller can match the two.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
} from '@opentelemetry/api';
import { TRACE_PARENT_HEADER, TRACE_STATE_HEADER, W3CTraceContextPropagator } from '@opentelemetry/core';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import type { TracingConfig } from './config.js';

const propagator = new W3CTraceContextPropagator();

type Headers = Record<string, unknown>;

/** AMQP header values reach us as strings, or as Buffers from some clients' byte arrays. */
const getter: TextMapGetter<Headers> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const v = carrier[key];
    return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('latin1') : undefined;
  },
};
const setter: TextMapSetter<Record<string, string | number>> = { set: (carrier, key, value) => (carrier[key] = value) };

/** The caller's trace context, from the input's headers: ROOT_CONTEXT when it has none (or a malformed one). */
export function extractTraceContext(headers: Headers | undefined): Context {
  return headers ? propagator.extract(ROOT_CONTEXT, headers, getter) : ROOT_CONTEXT;
}

/**
 * With tracing off, the reply still carries the caller's trace: its traceparent and tracestate, checked
 * and copied as they came. Undefined when the input has none.
 */
export function passTraceHeaders(headers: Headers | undefined): Record<string, string> | undefined {
  const spanContext = trace.getSpanContext(extractTraceContext(headers));
  if (!spanContext) return undefined;
  const out: Record<string, string> = {};
  propagator.inject(trace.setSpanContext(ROOT_CONTEXT, spanContext), out, setter);
  return out;
}

export interface InputFacts {
  headers?: Headers;
  queue: string;
  messageId?: string;
  correlationId?: string;
  redelivered: boolean;
  deliveryCount?: number;
  bodyBytes?: number;
  /** Epoch ms when the delivery was received; now when absent. */
  receivedAtMs?: number;
}

/** The spans of one input. Every method is safe to call once the trace has ended (it does nothing). */
export class InputTrace {
  private readonly process: Span;
  private stage: Span;
  private stageContext: Context;
  private ended = false;

  constructor(
    private readonly tracer: Tracer,
    input: InputFacts,
  ) {
    const parent = extractTraceContext(input.headers);
    const attributes: Attributes = {
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'process',
      'messaging.destination.name': input.queue,
      'messaging.rabbitmq.redelivered': input.redelivered,
    };
    if (input.messageId) attributes['messaging.message.id'] = input.messageId;
    if (input.correlationId) attributes['messaging.message.conversation_id'] = input.correlationId;
    if (input.deliveryCount !== undefined) attributes['messaging.rabbitmq.delivery_count'] = input.deliveryCount;
    if (input.bodyBytes !== undefined) attributes['messaging.message.body.size'] = input.bodyBytes;
    const startTime = input.receivedAtMs ?? Date.now();
    this.process = tracer.startSpan(
      `${input.queue} process`,
      { kind: SpanKind.CONSUMER, attributes, startTime },
      parent,
    );
    this.stageContext = trace.setSpan(parent, this.process);
    this.stage = tracer.startSpan('batch', { startTime }, this.stageContext);
  }

  /** Cut into a batch of `batchSize`, about to be scored. */
  batched(batchSize: number, atMs?: number): void {
    this.next('score', SpanKind.INTERNAL, { 'scorer.batch.size': batchSize }, atMs);
  }

  /** Scored (or answered without scoring: EXPIRED, a refused body); the reply is being built. */
  scored(outcome: { ok: boolean; code?: string }, atMs?: number): void {
    if (this.ended) return;
    this.process.setAttribute('scorer.status', outcome.ok ? 'ok' : 'error');
    if (!outcome.ok && outcome.code) this.process.setAttribute('scorer.error_code', outcome.code);
    this.next('reply', SpanKind.PRODUCER, {}, atMs);
  }

  /** The traceparent (and tracestate) for the reply: the `reply` span, in the input's trace. */
  replyHeaders(): Record<string, string> {
    const out: Record<string, string> = {};
    propagator.inject(trace.setSpan(this.stageContext, this.stage), out, setter);
    return out;
  }

  published(routingKey: string, atMs?: number): void {
    if (this.ended) return;
    this.stage.setAttribute('messaging.destination.name', routingKey);
    this.stage.addEvent('published', atMs);
  }

  /** The broker confirmed the reply; the input's ack goes next. */
  confirmed(atMs?: number): void {
    this.next('ack', SpanKind.INTERNAL, {}, atMs);
  }

  /** Acked: the trace of this input is complete. */
  acked(atMs?: number): void {
    this.finish(undefined, atMs);
  }

  /** Not answered here (its isolate died, its channel closed): requeued or dead-lettered by the broker. */
  abandoned(reason: string, settlement: string, atMs?: number): void {
    if (this.ended) return;
    this.process.setAttribute('scorer.settlement', settlement);
    this.finish(reason, atMs);
  }

  private next(name: string, kind: SpanKind, attributes: Attributes, atMs?: number): void {
    if (this.ended) return;
    const at = atMs ?? Date.now();
    this.stage.end(at);
    this.stage = this.tracer.startSpan(name, { kind, attributes, startTime: at }, this.stageContext);
  }

  private finish(error: string | undefined, atMs?: number): void {
    if (this.ended) return;
    this.ended = true;
    const at = atMs ?? Date.now();
    if (error !== undefined) {
      this.stage.setStatus({ code: SpanStatusCode.ERROR, message: error });
      this.process.setStatus({ code: SpanStatusCode.ERROR, message: error });
    }
    this.stage.end(at);
    this.process.end(at);
  }
}

export interface Tracing {
  readonly enabled: boolean;
  /** The spans of one input; undefined when tracing is off. */
  begin(input: InputFacts): InputTrace | undefined;
  /** Exports what is buffered and stops; idempotent. */
  shutdown(): Promise<void>;
}

export const TRACING_OFF: Tracing = { enabled: false, begin: () => undefined, shutdown: async () => {} };

/**
 * Starts the SDK and its exporter when the config asks for one; otherwise TRACING_OFF, loading nothing.
 * `exporter` replaces the configured one (tests).
 */
export async function startTracing(
  c: TracingConfig,
  o: { exporter?: SpanExporter; version?: string } = {},
): Promise<Tracing> {
  if (c.exporter === 'none' && !o.exporter) return TRACING_OFF;
  // Loaded only now: a consumer without tracing never pays for the SDK's modules.
  const { TracerProvider, BatchSpanProcessor, SimpleSpanProcessor, ConsoleSpanExporter } = await import(
    '@opentelemetry/sdk-trace'
  );
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  let processor: InstanceType<typeof SimpleSpanProcessor> | InstanceType<typeof BatchSpanProcessor> | undefined;
  if (o.exporter) processor = new SimpleSpanProcessor({ exporter: o.exporter });
  else if (c.exporter === 'console') processor = new SimpleSpanProcessor({ exporter: new ConsoleSpanExporter() });
  else {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    // Headers, timeout and compression come from OTEL_EXPORTER_OTLP_* as the exporter reads them itself.
    processor = new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: c.otlpTracesUrl }) });
  }
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': c.serviceName,
      ...(o.version ? { 'service.version': o.version } : {}),
    }),
    spanProcessors: [processor],
  });
  const tracer = provider.getTracer('onnx-rabbitmq-scorer', o.version);
  let stopped: Promise<void> | undefined;
  return {
    enabled: true,
    begin: (input) => new InputTrace(tracer, input),
    shutdown: () => (stopped ??= provider.shutdown().catch(() => {})),
  };
}

export { TRACE_PARENT_HEADER, TRACE_STATE_HEADER };
