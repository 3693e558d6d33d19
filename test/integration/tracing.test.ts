/**
 * Traces through a real consumer process and the real broker: with OTEL_EXPORTER_OTLP_ENDPOINT set,
 * an input's traceparent continues into the consumer's spans (exported to a receiver this test starts
 * on 127.0.0.1) and onto its reply; without OTEL_* no exporter starts and the caller's traceparent is
 * still passed back.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { consumersOfFile } from '../support/consumer-process.js';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver.js';

const IRIS = { data: [[5.1, 3.5, 1.4, 0.2]] };
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
/** Whatever the runner's environment says, the consumer's tracing is what the test sets. */
const NO_OTEL = {
  OTEL_TRACES_EXPORTER: '',
  OTEL_EXPORTER_OTLP_ENDPOINT: '',
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '',
  OTEL_SDK_DISABLED: '',
};

let receiver: OtlpReceiver;
const file = consumersOfFile();
const { consumers } = file;

before(async () => {
  receiver = await startOtlpReceiver();
});

after(async () => {
  await receiver.close();
});

test("a traceparent on the input continues into the consumer's spans, received → batched → scored → reply confirmed → acked, and onto the reply", async () => {
  const q = consumers.queuesFor('tracing.on');
  const c = consumers.startOn(q, {
    ...NO_OTEL,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_SERVICE_NAME: 'scorer-under-test',
  });
  await c.waitFor('"msg":"consuming"');
  assert.match(c.output(), /"msg":"tracing on"/);
  const got = await file.client.ask(q.input, q.replies, [
    {
      id: 'traced',
      body: IRIS,
      options: {
        correlationId: 'traced',
        headers: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01`, tracestate: 'vendor=abc' },
      },
    },
    { id: 'untraced', body: IRIS },
  ]);
  const reply = got.get('traced')!;
  assert.equal(reply.status, 'ok');
  // SIGTERM: the consumer finishes, and its span processor exports what it holds before exiting.
  assert.equal(await c.stop('SIGTERM'), 0);

  const mine = receiver.spans.filter((s) => s.traceId === TRACE_ID);
  assert.deepEqual(mine.map((s) => s.name).sort(), ['ack', 'batch', `${q.input} process`, 'reply', 'score'].sort());
  const process = mine.find((s) => s.name === `${q.input} process`)!;
  assert.equal(process.parentSpanId, CALLER_SPAN, "the process span's parent is the caller's span");
  assert.equal(process.kind, 5, 'SPAN_KIND_CONSUMER');
  for (const s of mine.filter((x) => x !== process))
    assert.equal(s.parentSpanId, process.spanId, `${s.name} is a child of the process span`);
  const replySpan = mine.find((s) => s.name === 'reply')!;
  assert.equal(replySpan.kind, 4, 'SPAN_KIND_PRODUCER');
  assert.equal(
    reply.headers.traceparent,
    `00-${TRACE_ID}-${replySpan.spanId}-01`,
    "the reply's traceparent is the reply span, in the input's trace",
  );
  assert.equal(reply.headers.tracestate, 'vendor=abc');

  // The input without one began a trace of its own, and its reply carries it.
  const other = got.get('untraced')!;
  const [, otherTrace] = /^00-([0-9a-f]{32})-[0-9a-f]{16}-01$/.exec(String(other.headers.traceparent)) ?? [];
  assert.ok(otherTrace, `a traceparent on the untraced input's reply: ${String(other.headers.traceparent)}`);
  const root = receiver.spans.find((s) => s.traceId === otherTrace && s.name === `${q.input} process`);
  assert.ok(root, 'exported');
  assert.equal(root.parentSpanId, '', 'a root span');
});

test("without OTEL_* no exporter starts; the reply still carries the caller's traceparent", async () => {
  const q = consumers.queuesFor('tracing.off');
  const c = consumers.startOn(q, NO_OTEL);
  await c.waitFor('"msg":"consuming"');
  const sent = receiver.requests();
  const got = await file.client.ask(q.input, q.replies, [
    {
      id: 'traced',
      body: IRIS,
      options: { correlationId: 'traced', headers: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01` } },
    },
    { id: 'untraced', body: IRIS },
  ]);
  assert.equal(await c.stop('SIGTERM'), 0);
  assert.doesNotMatch(c.output(), /tracing on/);
  assert.equal(receiver.requests(), sent, 'nothing exported');
  assert.equal(got.get('traced')!.headers.traceparent, `00-${TRACE_ID}-${CALLER_SPAN}-01`, 'passed through as it came');
  assert.equal(got.get('untraced')!.headers.traceparent, undefined, 'none invented');
});
