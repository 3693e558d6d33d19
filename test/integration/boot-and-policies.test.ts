/**
 * Small guarantees at the edges: a signal during boot exits 0; a REPLY_QUEUE that can drop confirmed
 * replies is named at warn; an id that is not valid UTF-8 is flagged (amqplib has already altered it).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { idMayBeAltered } from '../../src/broker/delivery.js';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer } from '../support/consumer-process.js';
import { logLines } from '../support/faults.js';

test('SIGTERM while the entry script is still loading: nothing more starts, exit 0', { timeout: 60_000 }, async () => {
  const input = uniqueName('boot-signal');
  const replies = uniqueName('boot-signal.replies');
  const consumer = startConsumer({ INPUT_QUEUE: input, REPLY_QUEUE: replies });
  await consumer.waitFor('"msg":"loading entry script"');
  assert.equal(await consumer.stop('SIGTERM'), 0);
  await consumer.closed;
  assert.ok(!consumer.output().includes('"msg":"consuming"'), 'it never subscribed');
  const client = await TestClient.connect();
  await client.deleteQueues(...queuesOf(input, replies));
  await client.close();
});

test('a REPLY_QUEUE declared with a message TTL is named at warn: replies can be dropped there after their confirm', {
  timeout: 60_000,
}, async () => {
  const client = await TestClient.connect();
  const input = uniqueName('ttl');
  const replies = uniqueName('ttl.replies');
  const ch = await client.connection.createChannel();
  await ch.assertQueue(replies, { durable: true, arguments: { 'x-message-ttl': 60_000 } });
  await ch.close();
  const consumer = startConsumer({ INPUT_QUEUE: input, REPLY_QUEUE: replies });
  try {
    await consumer.waitFor('"msg":"consuming"');
    const [line] = logLines(consumer.output(), 'reply queue has an argument that can drop confirmed replies');
    assert.ok(line, 'a warn line');
    assert.equal(line.level, 40);
    assert.equal(line.argument, 'x-message-ttl');
    assert.equal(line.value, '60000');
  } finally {
    await consumer.stop('SIGKILL');
    await client.deleteQueues(...queuesOf(input, replies));
    await client.close();
  }
});

test('an id amqplib decoded from bytes that are not UTF-8 is flagged as altered', () => {
  const decoded = Buffer.from([0x61, 0xff, 0x62]).toString('utf8');
  assert.equal(idMayBeAltered({ correlationId: decoded }), true);
  assert.equal(idMayBeAltered({ correlationId: 'req-1', messageId: 'ünïcode' }), false);
});
