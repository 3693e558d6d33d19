import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer, type ConsumerProcess } from '../support/consumer-process.js';

const input = uniqueName('happy');
const replies = uniqueName('happy.replies');
let client: TestClient;
let consumer: ConsumerProcess;

before(async () => {
  client = await TestClient.connect();
  consumer = startConsumer({ INPUT_QUEUE: input, REPLY_QUEUE: replies });
  await consumer.waitFor('"msg":"consuming"');
});

after(async () => {
  await consumer.stop();
  await client.deleteQueues(...queuesOf(input, replies));
  await client.close();
});

test('the demo model answers known iris rows with the right class, to REPLY_QUEUE, with the correlation id and x-status ok', async () => {
  const rows = [
    { id: 'setosa', row: [5.1, 3.5, 1.4, 0.2], label: 0 },
    { id: 'versicolor', row: [7.0, 3.2, 4.7, 1.4], label: 1 },
    { id: 'virginica', row: [6.3, 3.3, 6.0, 2.5], label: 2 },
  ];
  for (const r of rows) await client.publish(input, { data: [r.row] }, { correlationId: r.id });
  const got = await client.collect(replies, (rs) => rs.length === rows.length);
  assert.equal(got.length, rows.length);
  for (const r of rows) {
    const reply = got.find((g) => g.correlationId === r.id);
    assert.ok(reply, `a reply for ${r.id}`);
    assert.equal(reply.status, 'ok');
    assert.equal(reply.headers['x-model'], 'iris');
    assert.equal(typeof reply.headers['x-scoring-ms'], 'number');
    const body = reply.json() as { label: number[]; probabilities: number[][] };
    assert.deepEqual(body.label, [r.label]);
    assert.equal(body.probabilities[0].length, 3);
    assert.ok(Math.abs(body.probabilities[0].reduce((a, b) => a + b, 0) - 1) < 1e-5);
  }
});

test('a reply goes to the input replyTo when it has one', async () => {
  const own = uniqueName('happy.own');
  const ch = await client.connection.createChannel();
  await ch.assertQueue(own, { exclusive: true });
  await client.publish(input, { data: [[5.1, 3.5, 1.4, 0.2]] }, { correlationId: 'to-own', replyTo: own });
  const got = await client.collect(own, (rs) => rs.length === 1);
  assert.equal(got[0]?.correlationId, 'to-own');
  assert.deepEqual((got[0].json() as { label: number[] }).label, [0]);
  await ch.close();
});

test('the reply carries the input messageId when it has no correlationId', async () => {
  await client.publish(input, { data: [[6.3, 3.3, 6.0, 2.5]] }, { messageId: 'm-42' });
  const got = await client.collect(replies, (rs) => rs.some((r) => r.correlationId === 'm-42'));
  assert.ok(got.some((r) => r.correlationId === 'm-42' && r.status === 'ok'));
});

test('a message with several rows gets one label per row', async () => {
  await client.publish(
    input,
    {
      data: [
        [5.1, 3.5, 1.4, 0.2],
        [7.0, 3.2, 4.7, 1.4],
        [6.3, 3.3, 6.0, 2.5],
      ],
    },
    { correlationId: 'three' },
  );
  const got = await client.collect(replies, (rs) => rs.some((r) => r.correlationId === 'three'));
  const reply = got.find((r) => r.correlationId === 'three')!;
  assert.deepEqual((reply.json() as { label: number[] }).label, [0, 1, 2]);
});

test('a client that declares the reply queue the way the RabbitMQ tutorials do (durable, no arguments) can read it', async () => {
  const ch = await client.connection.createChannel();
  await ch.assertQueue(replies, { durable: true });
  await ch.close();
  await client.publish(input, { data: [[5.1, 3.5, 1.4, 0.2]] }, { correlationId: 'tutorial-client' });
  const got = await client.collect(replies, (rs) => rs.some((r) => r.correlationId === 'tutorial-client'));
  assert.ok(got.some((r) => r.correlationId === 'tutorial-client' && r.status === 'ok'));
});
