/**
 * An input queue that already exists with other arguments than the consumer declares stops boot
 * with one line that names the argument and the way out, and touches no message. The broker texts
 * behind these lines are RabbitMQ's own (3.10.8 here): it names the first argument that differs in
 * its own order, which for a classic queue met by a quorum declaration is not x-queue-type.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { TestClient } from '../support/broker.js';
import { TestConsumers, bootFailure } from '../support/consumer-process.js';

const run = promisify(execFile);
let client: TestClient;
const consumers = new TestConsumers();

before(async () => {
  client = await TestClient.connect();
});

after(async () => {
  await consumers.close(client, 'SIGKILL');
  await client.close();
});

/** Declares `queue` as someone else did before the consumer came, with one message waiting in it. */
async function preDeclare(queue: string, args: Record<string, unknown>): Promise<void> {
  const ch = await client.connection.createChannel();
  await ch.assertQueue(queue, { durable: true, arguments: args });
  await ch.close();
  await client.publish(queue, { data: [[5.1, 3.5, 1.4, 0.2]] }, { correlationId: 'waiting' });
}

/** Boots a consumer that must fail; returns its one plain line (the rest are JSON log lines). */
async function bootFails(env: Record<string, string>): Promise<string> {
  const c = consumers.start({ CONNECT_RETRIES_AT_BOOT: '0', ...env });
  const line = await bootFailure(c);
  assert.ok(!c.output().includes('"msg":"consuming"'), 'it never subscribed');
  assert.match(line, /^scorer: boot failed: /);
  return line;
}

/** The arguments a QUEUE_TYPE=quorum consumer with DELIVERY_LIMIT=`deliveryLimit` declares its input queue with. */
function quorumArguments(input: string, deliveryLimit: number): Record<string, unknown> {
  return {
    'x-queue-type': 'quorum',
    'x-delivery-limit': deliveryLimit,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': `${input}.dead`,
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  };
}

test('a plain classic input queue (declared without arguments) where QUEUE_TYPE=quorum stops boot in one line that names the argument and says to delete the queue; the waiting message is untouched', {
  timeout: 60_000,
}, async (t) => {
  const { input, replies } = consumers.queuesFor('qargs.plain');
  await preDeclare(input, {});
  const line = await bootFails({ INPUT_QUEUE: input, REPLY_QUEUE: replies, QUEUE_TYPE: 'quorum' });
  t.diagnostic(line);
  // RabbitMQ reports the dead-letter exchange first: the queue has none, the consumer declares '' (the default exchange).
  assert.ok(line.includes(`queue '${input}' exists with x-dead-letter-exchange = none`), line);
  assert.ok(line.includes('delete the queue'), line);
  assert.equal(await client.messageCount(input), 1, 'the message waiting in the queue is still there');
});

test('a classic input queue declared by a QUEUE_TYPE=classic consumer, met with QUEUE_TYPE=quorum, stops boot in one line that names the argument and QUEUE_TYPE', {
  timeout: 60_000,
}, async (t) => {
  const { input, replies } = consumers.queuesFor('qargs.classic');
  await preDeclare(input, { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': `${input}.dead` });
  const line = await bootFails({ INPUT_QUEUE: input, REPLY_QUEUE: replies, QUEUE_TYPE: 'quorum' });
  t.diagnostic(line);
  assert.ok(
    line.includes(`queue '${input}' exists with x-overflow = none, but this consumer declares reject-publish`),
    line,
  );
  assert.ok(line.includes('QUEUE_TYPE=classic'), line);
  assert.equal(await client.messageCount(input), 1, 'the message waiting in the queue is still there');
});

test('a quorum input queue met with QUEUE_TYPE=classic stops boot in one line that names the argument and QUEUE_TYPE=quorum', {
  timeout: 60_000,
}, async (t) => {
  const { input, replies } = consumers.queuesFor('qargs.quorum');
  await preDeclare(input, quorumArguments(input, 3));
  const line = await bootFails({ INPUT_QUEUE: input, REPLY_QUEUE: replies, QUEUE_TYPE: 'classic' });
  t.diagnostic(line);
  assert.ok(
    line.includes(
      `queue '${input}' exists with x-dead-letter-strategy = at-least-once, but this consumer declares none`,
    ),
    line,
  );
  assert.ok(line.includes('QUEUE_TYPE=quorum'), line);
  assert.equal(await client.messageCount(input), 1, 'the message waiting in the queue is still there');
});

test('a quorum input queue with another x-delivery-limit stops boot in one line that names x-delivery-limit, both values and DELIVERY_LIMIT', {
  timeout: 60_000,
}, async (t) => {
  const { input, replies } = consumers.queuesFor('qargs.limit');
  await preDeclare(input, quorumArguments(input, 5));
  const line = await bootFails({ INPUT_QUEUE: input, REPLY_QUEUE: replies, QUEUE_TYPE: 'quorum', DELIVERY_LIMIT: '3' });
  t.diagnostic(line);
  assert.ok(line.includes(`queue '${input}' exists with x-delivery-limit = 5, but this consumer declares 3`), line);
  assert.ok(line.includes('DELIVERY_LIMIT'), line);
  assert.equal(await client.messageCount(input), 1, 'the message waiting in the queue is still there');
});

test('QUEUE_TYPE=classic works end to end: the input queue is a classic queue with the dead-letter route, and inputs get their replies', {
  timeout: 60_000,
}, async () => {
  const { input, replies } = consumers.queuesFor('qargs.e2e');
  const c = consumers.start({ INPUT_QUEUE: input, REPLY_QUEUE: replies, QUEUE_TYPE: 'classic' });
  await c.waitFor('"msg":"consuming"');

  const { stdout } = await run('rabbitmqctl', ['list_queues', 'name', 'type', 'arguments', '-q'], { timeout: 30_000 });
  const row = (q: string) => stdout.split('\n').find((l) => l.startsWith(`${q}\t`)) ?? '';
  assert.match(row(input), /\tclassic\t/, 'the input queue is classic');
  assert.ok(
    row(input).includes(`{"x-dead-letter-routing-key","${input}.dead"}`),
    `dead-letter route to ${input}.dead: ${row(input)}`,
  );
  assert.doesNotMatch(row(input), /x-delivery-limit/, 'no delivery limit on a classic queue');
  assert.match(row(replies), /\tclassic\t/, 'the reply queue it declares is classic too');

  const rows = [
    { id: 'classic-0', row: [5.1, 3.5, 1.4, 0.2], label: 0 },
    { id: 'classic-1', row: [7.0, 3.2, 4.7, 1.4], label: 1 },
  ];
  for (const r of rows) await client.publish(input, { data: [r.row] }, { correlationId: r.id });
  await client.publish(input, 'not json', { correlationId: 'classic-bad' });
  const got = await client.collect(replies, (rs) => rs.length === 3);
  for (const r of rows) {
    const reply = got.find((g) => g.correlationId === r.id);
    assert.equal(reply?.status, 'ok');
    assert.deepEqual((reply.json() as { label: number[] }).label, [r.label]);
  }
  assert.equal(got.find((g) => g.correlationId === 'classic-bad')?.status, 'error');
  // Stopped first: an input still held unacked would go back to ready then.
  assert.equal(await c.stop(), 0);
  assert.equal(await client.messageCount(input), 0, 'every input acked');
});
