import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tsImport } from 'tsx/esm/api';
import { buildReply, type Outcome } from '../../src/reply.js';

const context = { replyQueue: 'scoring.replies', modelName: 'iris', scoringMs: 1.23456 };
const ok: Outcome = { ok: true, body: Buffer.from('{"label":[0]}') };
const failed: Outcome = { ok: false, code: 'SHAPE', message: "input 'float_input' expects shape [-1,4], got [1,3]" };

test('a reply goes to the input replyTo when it has one', () => {
  const reply = buildReply({ replyTo: 'amq.rabbitmq.reply-to.g1h2', correlationId: 'c1' }, ok, context);
  assert.equal(reply.routingKey, 'amq.rabbitmq.reply-to.g1h2');
  assert.equal(reply.toReplyQueue, false);
});

test('a reply without replyTo goes to REPLY_QUEUE', () => {
  const reply = buildReply({ correlationId: 'c1' }, ok, context);
  assert.equal(reply.routingKey, 'scoring.replies');
  assert.equal(reply.toReplyQueue, true);
  assert.equal(
    buildReply({ replyTo: '' }, ok, context).routingKey,
    'scoring.replies',
    'an empty replyTo is no replyTo',
  );
});

test('the reply carries the input correlationId, else its messageId, else none', () => {
  const both = buildReply({ correlationId: 'corr', messageId: 'msg' }, ok, context);
  assert.equal(both.correlationId, 'corr');
  assert.equal(both.properties.correlationId, 'corr');
  const onlyMessageId = buildReply({ messageId: 'msg' }, ok, context);
  assert.equal(onlyMessageId.correlationId, 'msg');
  assert.equal(onlyMessageId.properties.correlationId, 'msg');
  const neither = buildReply({}, ok, context);
  assert.equal(neither.correlationId, undefined);
  assert.ok(!('correlationId' in neither.properties), 'no correlationId property at all');
});

test('a reply is persistent JSON with its own messageId and a timestamp in seconds', () => {
  const a = buildReply({ correlationId: 'c' }, ok, context);
  const b = buildReply({ correlationId: 'c' }, ok, context);
  assert.equal(a.properties.persistent, true);
  assert.equal(a.properties.contentType, 'application/json');
  // 96 random bits of this process (16 base64url characters), then a count.
  assert.match(a.properties.messageId, /^[A-Za-z0-9_-]{16}\.[0-9a-z]+$/);
  assert.notEqual(a.properties.messageId, b.properties.messageId, 'one id per reply');
  assert.ok(Math.abs(a.properties.timestamp - Date.now() / 1000) < 5);
});

test("another consumer's replies (another copy of reply.ts) never share a messageId with this one's", async () => {
  const other = (await tsImport('../../src/reply.ts', import.meta.url)) as typeof import('../../src/reply.js');
  const ours = new Set(Array.from({ length: 1000 }, () => buildReply({}, ok, context).properties.messageId));
  assert.equal(ours.size, 1000);
  for (let i = 0; i < 1000; i++) assert.ok(!ours.has(other.buildReply({}, ok, context).properties.messageId));
});

test('a success reply has x-status ok, the model, the scoring time, and the result as its body', () => {
  const reply = buildReply({ correlationId: 'c' }, ok, context);
  assert.deepEqual(reply.properties.headers, { 'x-status': 'ok', 'x-model': 'iris', 'x-scoring-ms': 1.235 });
  assert.equal(reply.body.toString(), '{"label":[0]}');
});

test('an error reply has x-status error, the error code, and a body that is a JSON string of one line', () => {
  const reply = buildReply({ correlationId: 'c' }, failed, context);
  assert.equal(reply.properties.headers['x-status'], 'error');
  assert.equal(reply.properties.headers['x-error-code'], 'SHAPE');
  assert.equal(reply.properties.headers['x-model'], 'iris');
  const body = reply.body.toString();
  assert.ok(!body.includes('\n'));
  assert.equal(JSON.parse(body), "input 'float_input' expects shape [-1,4], got [1,3]");
});

test('an error message with quotes and non-ASCII survives as a JSON string', () => {
  const reply = buildReply({}, { ok: false, code: 'RUN_FAILED', message: 'bad "value" → ünïcode \\ here' }, context);
  assert.equal(JSON.parse(reply.body.toString()), 'bad "value" → ünïcode \\ here');
});

test('replies are mandatory (an unroutable one comes back), except to direct reply-to, which RabbitMQ returns even when delivered', () => {
  assert.equal(buildReply({}, ok, context).mandatory, true);
  assert.equal(buildReply({ replyTo: 'callers.queue' }, ok, context).mandatory, true);
  assert.equal(buildReply({ replyTo: 'amq.rabbitmq.reply-to.g1h2AA5yZXQAAAAA' }, ok, context).mandatory, false);
});

test("a binary outcome's reply carries its content type and its bytes as they are; an error reply stays a JSON string", () => {
  const npy: Outcome = { ok: true, body: Buffer.from([0x93, 0x4e, 0x55]), contentType: 'application/x-npy' };
  const reply = buildReply({ correlationId: 'c' }, npy, context);
  assert.equal(reply.properties.contentType, 'application/x-npy');
  assert.deepEqual([...reply.body], [0x93, 0x4e, 0x55]);
  const err = buildReply({ correlationId: 'c' }, failed, context);
  assert.equal(err.properties.contentType, 'application/json');
});

test('the reply carries x-model-version when the scored batch had one, and no such header otherwise', () => {
  assert.equal(
    buildReply({}, ok, { ...context, modelVersion: 'iris/3' }).properties.headers['x-model-version'],
    'iris/3',
  );
  assert.equal(
    buildReply({}, failed, { ...context, modelVersion: '0123456789ab' }).properties.headers['x-model-version'],
    '0123456789ab',
  );
  assert.equal('x-model-version' in buildReply({}, ok, context).properties.headers, false);
});

test('a reply carries x-queue-wait-ms and the trace headers when the answer path gives them, and neither when it does not', () => {
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const r = buildReply({ correlationId: 'c' }, failed, {
    ...context,
    queueWaitMs: 1234.6,
    traceHeaders: { traceparent, tracestate: 'a=1' },
  });
  assert.equal(r.properties.headers['x-queue-wait-ms'], 1235);
  assert.equal(r.properties.headers.traceparent, traceparent);
  assert.equal(r.properties.headers.tracestate, 'a=1');
  assert.equal(r.properties.headers['x-error-code'], 'SHAPE');
  const plain = buildReply({ correlationId: 'c' }, ok, context);
  assert.equal('x-queue-wait-ms' in plain.properties.headers, false);
  assert.equal('traceparent' in plain.properties.headers, false);
});
