/**
 * MAX_PRIORITY in the broker, as the consumer's topology declares it (topology.ts), on the real RabbitMQ:
 * a classic input queue delivers higher priorities first; a quorum one is declared without the argument,
 * which RabbitMQ 3.x would refuse.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { topologyFor } from '../../src/broker/topology.js';
import { TestClient, uniqueName } from '../support/broker.js';

let client: TestClient;
const queues: string[] = [];

before(async () => {
  client = await TestClient.connect();
});

after(async () => {
  await client.deleteQueues(...queues);
  await client.close();
});

async function declare(queueType: 'classic' | 'quorum', maxPriority: number): Promise<string> {
  const input = uniqueName(`prio.${queueType}`);
  const t = topologyFor({
    inputQueue: input,
    replyQueue: uniqueName('prio.replies'),
    queueType,
    deliveryLimit: 3,
    maxPriority,
  });
  queues.push(input, t.deadQueue);
  const ch = await client.connection.createChannel();
  for (const q of [t.deadQueue, input]) await ch.assertQueue(q, { durable: true, arguments: t.argumentsOf(q) });
  await ch.close();
  return input;
}

async function order(queue: string): Promise<string[]> {
  const ch = await client.connection.createChannel();
  const ids: string[] = [];
  for (let m = await ch.get(queue, { noAck: true }); m; m = await ch.get(queue, { noAck: true }))
    ids.push(m.properties.correlationId as string);
  await ch.close();
  return ids;
}

const lowThenHigh = [
  { body: { data: 1 }, options: { correlationId: 'low1' } },
  { body: { data: 2 }, options: { correlationId: 'low2', priority: 1 } },
  { body: { data: 3 }, options: { correlationId: 'high', priority: 5 } },
  { body: { data: 4 }, options: { correlationId: 'above', priority: 200 } },
];

test('a classic input queue with MAX_PRIORITY delivers a high-priority input published after low ones first', async () => {
  const input = await declare('classic', 5);
  await client.publishMany(input, lowThenHigh);
  assert.deepEqual(
    await order(input),
    ['high', 'above', 'low2', 'low1'],
    'above the maximum counts as the maximum, first come first served',
  );
});

test('with MAX_PRIORITY 0 a classic input queue stays first in, first out', async () => {
  const input = await declare('classic', 0);
  await client.publishMany(input, lowThenHigh);
  assert.deepEqual(await order(input), ['low1', 'low2', 'high', 'above']);
});

test('a quorum input queue is declared without x-max-priority whatever MAX_PRIORITY says, and takes prioritised messages', async () => {
  const input = await declare('quorum', 5);
  await client.publishMany(input, lowThenHigh);
  assert.equal(
    (await order(input)).length,
    4,
    'RabbitMQ 3.10 keeps arrival order; 4.x delivers priority 5 and above first',
  );
});
