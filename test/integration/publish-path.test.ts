import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type * as amqp from 'amqplib';
import { publishOn } from '../../src/broker/amqplib-internals.js';
import { buildReply, type Outcome } from '../../src/reply.js';
import { TestClient, uniqueName } from '../support/broker.js';

// publishOn skips amqplib's publish() for speed: what reaches the broker must be what publish() sends.
let client: TestClient;
let ch: amqp.ConfirmChannel;
const queue = uniqueName('publish-path');

before(async () => {
  client = await TestClient.connect();
  ch = await client.connection.createConfirmChannel();
  await ch.assertQueue(queue, { durable: true });
});
after(async () => {
  await ch.deleteQueue(queue);
  await client.connection.close();
});

function send(reply: ReturnType<typeof buildReply>, viaInternals: boolean): Promise<void> {
  return new Promise((resolve, reject) => publishOn(ch, reply, (err) => (err ? reject(err) : resolve()), viaInternals));
}

async function take(): Promise<amqp.GetMessage> {
  const msg = await ch.get(queue, { noAck: true });
  assert.ok(msg, 'the reply is in the queue');
  return msg;
}

test('a reply sent the lean way reaches the broker exactly as amqplib publish() sends it', async () => {
  const cases: Array<[Parameters<typeof buildReply>[0], Outcome]> = [
    [{ correlationId: 'c-1' }, { ok: true, body: Buffer.from('{"label":[1]}') }],
    [{ messageId: 'm-2' }, { ok: false, code: 'SHAPE', message: "input 'x' expects shape [-1,4], got [1,3]" }],
    [{}, { ok: true, body: Buffer.from('"ünïcode"') }],
    // Over reply-frames.ts's one buffer: amqplib encodes it.
    [{ correlationId: 'big' }, { ok: true, body: Buffer.from(JSON.stringify('x'.repeat(70_000))) }],
  ];
  for (const [address, outcome] of cases) {
    const reply = buildReply(address, outcome, { replyQueue: queue, modelName: 'iris', scoringMs: 1.234 });
    await send(reply, false);
    const viaPublish = await take();
    await send(reply, true);
    const lean = await take();
    assert.deepEqual(lean.properties, viaPublish.properties);
    assert.equal(lean.fields.routingKey, viaPublish.fields.routingKey);
    assert.deepEqual(lean.content, viaPublish.content);
    assert.equal(lean.properties.deliveryMode, 2, 'persistent');
  }
});

test('a mandatory reply to a missing queue comes back either way', async () => {
  const returned: string[] = [];
  ch.on('return', (msg: amqp.Message) => returned.push(msg.properties.messageId as string));
  const gone = uniqueName('publish-path-gone');
  for (const viaInternals of [false, true]) {
    const reply = buildReply(
      { replyTo: gone },
      { ok: true, body: Buffer.from('1') },
      { replyQueue: queue, modelName: 'iris', scoringMs: 1 },
    );
    assert.equal(reply.mandatory, true);
    await send(reply, viaInternals);
    assert.ok(returned.includes(reply.properties.messageId), `returned (viaInternals ${viaInternals})`);
  }
});

test('on a closed channel the lean way throws as publish() does, and writes nowhere', async () => {
  const closing = await client.connection.createConfirmChannel();
  await closing.close();
  // The number it had is free again: a new channel may take it, and must not get the reply.
  const next = await client.connection.createConfirmChannel();
  const reply = buildReply(
    { correlationId: 'late' },
    { ok: true, body: Buffer.from('1') },
    {
      replyQueue: queue,
      modelName: 'iris',
      scoringMs: 1,
    },
  );
  for (const viaInternals of [false, true])
    assert.throws(() => publishOn(closing, reply, () => {}, viaInternals), /closed/i, `viaInternals ${viaInternals}`);
  await next.close();
  assert.equal((await client.messageCount(queue)) ?? 0, 0, 'nothing reached the queue');
});
