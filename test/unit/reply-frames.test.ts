import assert from 'node:assert/strict';
import { test } from 'node:test';
import { publishFields } from '../../src/broker/amqplib-internals.js';
import { encodeReplyPublish, MAX_ENCODED_BYTES } from '../../src/broker/reply-frames.js';
import { mulberry32 } from '../../src/onnx/batching.js';
import { buildReply, type Outcome, type Reply } from '../../src/reply.js';
import { defs, frames } from '../support/amqplib-codec.js';

/** What amqplib's Connection.sendMessage writes for the fields publishOn would give it. */
function amqplibBytes(channel: number, reply: Reply): Buffer {
  const fields = publishFields(reply);
  const parts = [
    defs.encodeMethod(defs.BasicPublish, channel, fields),
    defs.encodeProperties(defs.BasicProperties, channel, reply.body.length, fields),
  ];
  if (reply.body.length > 0) parts.push(frames.makeBodyFrame(channel, reply.body));
  return Buffer.concat(parts);
}

test('a reply encodes to the bytes amqplib writes for it, for every kind of reply and header value', () => {
  // Seeded, so a failure names a case that can be run again.
  const next = mulberry32(16);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
  const numbers = [
    0,
    1,
    -1,
    127,
    128,
    -128,
    -129,
    32767,
    32768,
    -32768,
    -32769,
    2 ** 31 - 1,
    2 ** 31,
    -(2 ** 31),
    -(2 ** 31) - 1,
    2 ** 40,
    -(2 ** 40),
    Number.MAX_SAFE_INTEGER,
    0.5,
    1.234,
    -3.25,
    1e-9,
    2 ** 50 + 0.5,
    2 ** 63,
    1e300,
  ];
  const strings = ['', 'ok', 'é ü ✓ 日本', 'x'.repeat(300), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'];
  for (let i = 0; i < 2000; i++) {
    const outcome: Outcome =
      next() < 0.2
        ? { ok: false, code: 'SHAPE', message: pick(strings) }
        : { ok: true, body: Buffer.from(pick(['{"label":[0]}', '', '[[0.1,0.2]]', 'ü'.repeat(next() * 400)])) };
    const reply = buildReply(
      {
        correlationId: next() < 0.8 ? pick(['c1', 'é-1', String(i), 'y'.repeat(255)]) : undefined,
        replyTo: next() < 0.3 ? pick(['amq.rabbitmq.reply-to.g1h2', 'caller.q', 'ü-queue']) : undefined,
      },
      outcome,
      {
        replyQueue: pick(['scoring.replies', 'bench.mx7.replies', 'ответы']),
        modelName: pick(['iris', 'mlp', 'модель']),
        modelVersion: next() < 0.5 ? 'sha256:0123456789ab' : undefined,
        scoringMs: pick(numbers),
        queueWaitMs: next() < 0.5 ? pick(numbers) : undefined,
        traceHeaders: next() < 0.3 ? { traceparent: pick(strings), tracestate: 'a=b' } : undefined,
      },
    );
    if (next() < 0.3) reply.properties.headers['x-extra'] = pick(numbers);
    if (next() < 0.2) reply.properties.contentType = pick(['application/x-npy', 'image/png']);
    const channel = 1 + Math.floor(next() * 2047);
    const ours = encodeReplyPublish(channel, reply);
    let theirs: Buffer;
    try {
      theirs = amqplibBytes(channel, reply);
    } catch {
      assert.equal(ours, undefined, `case ${i}: what amqplib refuses is left to it, to refuse as it does`);
      continue;
    }
    if (ours === undefined) {
      assert.ok(theirs.length > MAX_ENCODED_BYTES, `case ${i}: only a large reply is left to amqplib`);
      continue;
    }
    assert.deepEqual(ours, theirs, `case ${i}: ${JSON.stringify(reply.properties)}`);
  }
});

test('what it cannot encode as amqplib would, it leaves to amqplib', () => {
  const reply = buildReply(
    { correlationId: 'c' },
    { ok: true, body: Buffer.from('{}') },
    {
      replyQueue: 'q',
      modelName: 'm',
      scoringMs: 1,
    },
  );
  assert.ok(encodeReplyPublish(1, reply), 'a plain reply is encoded');
  const withObject = { ...reply, properties: { ...reply.properties, headers: { nested: { a: 1 } as never } } };
  assert.equal(encodeReplyPublish(1, withObject), undefined, 'a table-valued header');
  const longId = { ...reply, properties: { ...reply.properties, correlationId: 'x'.repeat(256) } };
  assert.equal(encodeReplyPublish(1, longId), undefined, 'a short string over 255 bytes');
  const big = { ...reply, body: Buffer.alloc(MAX_ENCODED_BYTES) };
  assert.equal(encodeReplyPublish(1, big), undefined, 'a body bigger than one pooled buffer');
});

test("a batch's replies that share their headers, between replies that add their own or change one, each encode to amqplib's bytes", () => {
  const context = { replyQueue: 'scoring.replies', modelName: 'iris', modelVersion: 'iris/3', scoringMs: 0.731 };
  const ok: Outcome = { ok: true, body: Buffer.from('{"label":[0]}') };
  const replies: Reply[] = [];
  for (let i = 0; i < 40; i++) {
    const scoringMs = i < 20 ? context.scoringMs : 1.5; // a second batch: one value changes
    const own =
      i % 7 === 3
        ? { queueWaitMs: i }
        : i % 11 === 5
          ? { traceHeaders: { traceparent: `00-${i}`, tracestate: 'a=b' } }
          : {};
    replies.push(buildReply({ correlationId: `c${i}` }, i % 13 === 4 ? failed : ok, { ...context, scoringMs, ...own }));
  }
  // The same values in new objects and strings made anew: equal by value, not by identity.
  replies.push(buildReply({ correlationId: 'again' }, ok, { ...context, modelName: ['ir', 'is'].join('') }));
  replies.push(buildReply({ correlationId: 'fewer' }, ok, { replyQueue: 'q', modelName: 'iris', scoringMs: 0.731 }));
  for (const [i, reply] of replies.entries())
    assert.deepEqual(
      encodeReplyPublish(1, reply),
      amqplibBytes(1, reply),
      `reply ${i}: ${JSON.stringify(reply.properties.headers)}`,
    );
});

const failed: Outcome = { ok: false, code: 'SHAPE', message: 'wrong shape' };
