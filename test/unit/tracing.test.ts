/**
 * tracing.ts on its own: a fake message path's spans, exported over OTLP/HTTP to a receiver this test
 * starts on 127.0.0.1 (no collector, no broker), must continue the input's traceparent.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { TRACING_OFF, passTraceHeaders, startTracing } from '../../src/tracing.js';
import { startOtlpReceiver, type OtlpReceiver, type OtlpSpan } from '../support/otlp-receiver.js';

let receiver: OtlpReceiver;
let url: string;
let received: OtlpSpan[];

before(async () => {
  receiver = await startOtlpReceiver();
  url = receiver.url;
  received = receiver.spans;
});

after(() => receiver.close());

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

test("an input's traceparent continues into the consumer's spans, exported over OTLP/HTTP, and onto the reply", async () => {
  const config = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_SERVICE_NAME: 'scorer-under-test' });
  assert.equal(config.tracing.exporter, 'otlp');
  const tracing = await startTracing(config.tracing);
  assert.equal(tracing.enabled, true);

  const t = tracing.begin({
    headers: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01`, tracestate: 'vendor=abc' },
    queue: 'scoring.requests',
    messageId: 'm1',
    correlationId: 'c1',
    redelivered: false,
    receivedAtMs: Date.now() - 5,
  });
  assert.ok(t);
  t.batched(4);
  t.scored({ ok: true });
  const replyHeaders = t.replyHeaders();
  t.published('scoring.replies');
  t.confirmed();
  t.acked();
  t.acked(); // a second end is harmless
  await tracing.shutdown();

  const mine = received.filter((s) => s.traceId === TRACE_ID);
  assert.deepEqual(mine.map((s) => s.name).sort(), ['ack', 'batch', 'reply', 'score', 'scoring.requests process']);
  assert.equal(received.length, mine.length, 'every exported span is in the input trace');
  const process = mine.find((s) => s.name === 'scoring.requests process')!;
  assert.equal(process.parentSpanId, CALLER_SPAN, "the process span's parent is the caller's span");
  assert.equal(process.kind, 5, 'SPAN_KIND_CONSUMER');
  for (const s of mine.filter((x) => x !== process))
    assert.equal(s.parentSpanId, process.spanId, `${s.name} is a child of the process span`);
  const reply = mine.find((s) => s.name === 'reply')!;
  assert.equal(reply.kind, 4, 'SPAN_KIND_PRODUCER');
  assert.equal(
    replyHeaders.traceparent,
    `00-${TRACE_ID}-${reply.spanId}-01`,
    "the reply's traceparent is the reply span, in the input's trace",
  );
  assert.equal(replyHeaders.tracestate, 'vendor=abc', 'tracestate rides along');
});

test('an input without a traceparent starts a trace of its own', async () => {
  received.length = 0;
  const tracing = await startTracing(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${url}/v1/traces` }).tracing);
  const t = tracing.begin({ queue: 'q', redelivered: true, deliveryCount: 1 })!;
  t.batched(1);
  t.scored({ ok: false, code: 'EXPIRED' });
  const headers = t.replyHeaders();
  t.confirmed();
  t.acked();
  await tracing.shutdown();
  const process = received.find((s) => s.name === 'q process')!;
  assert.ok(process, 'exported');
  assert.equal(process.parentSpanId, '', 'a root span');
  assert.match(headers.traceparent, new RegExp(`^00-${process.traceId}-[0-9a-f]{16}-01$`));
});

test('without OTEL_* variables tracing is off: no exporter, no spans, nothing sent', async () => {
  const sent = receiver.requests();
  const config = loadConfig({});
  assert.deepEqual(config.tracing, { exporter: 'none', otlpTracesUrl: '', serviceName: 'onnx-rabbitmq-scorer' });
  const tracing = await startTracing(config.tracing);
  assert.equal(tracing, TRACING_OFF);
  assert.equal(
    tracing.begin({ queue: 'q', redelivered: false, headers: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01` } }),
    undefined,
  );
  await tracing.shutdown();
  assert.equal(receiver.requests(), sent, 'no request reached the receiver');
});

test('OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true wins over an endpoint', () => {
  assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_TRACES_EXPORTER: 'none' }).tracing.exporter, 'none');
  assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_SDK_DISABLED: 'true' }).tracing.exporter, 'none');
  assert.equal(
    loadConfig({ OTEL_TRACES_EXPORTER: 'otlp' }).tracing.otlpTracesUrl,
    'http://localhost:4318/v1/traces',
    "the specification's default endpoint",
  );
  assert.equal(
    loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' }).tracing.otlpTracesUrl,
    'http://c:4318/v1/traces',
  );
  assert.throws(
    () => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }),
    /config OTEL_EXPORTER_OTLP_ENDPOINT: .*got "collector:4318"/,
  );
});

test('with tracing off the reply still carries the caller’s traceparent, checked; a malformed one is dropped', () => {
  assert.deepEqual(passTraceHeaders({ traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01`, tracestate: 'a=1' }), {
    traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01`,
    tracestate: 'a=1',
  });
  assert.deepEqual(passTraceHeaders({ traceparent: Buffer.from(`00-${TRACE_ID}-${CALLER_SPAN}-00`) }), {
    traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-00`,
  });
  assert.equal(passTraceHeaders({ traceparent: 'not-a-traceparent' }), undefined);
  assert.equal(passTraceHeaders({}), undefined);
  assert.equal(passTraceHeaders(undefined), undefined);
});
