import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer, type ConsumerProcess } from '../support/consumer-process.js';
import { logLines } from '../support/faults.js';

const ROW = { data: [[5.1, 3.5, 1.4, 0.2]] };
let client: TestClient;
const cleanups: Array<() => Promise<unknown>> = [];

before(async () => {
  client = await TestClient.connect();
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await client.close();
});

/** A consumer of its own on fresh queues, torn down after the file. */
async function consumerOn(
  prefix: string,
  env: Record<string, string> = {},
): Promise<{ input: string; replies: string; consumer: ConsumerProcess }> {
  const input = uniqueName(prefix);
  const replies = uniqueName(`${prefix}.replies`);
  const consumer = startConsumer({ INPUT_QUEUE: input, REPLY_QUEUE: replies, ...env });
  cleanups.push(async () => {
    await consumer.stop('SIGKILL');
    await client.deleteQueues(...queuesOf(input, replies));
  });
  await consumer.waitFor('"msg":"consuming"');
  return { input, replies, consumer };
}

/** Polls until `queue` exists and holds `count` ready messages. */
async function until(queue: string, count: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await client.messageCount(queue).catch(() => -1)) === count) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

test('deleting the input queue while the consumer runs does not crash it: it declares the queue again and goes on consuming', {
  timeout: 30_000,
}, async () => {
  // PREFETCH at the first, cautious prefetch: otherwise the first reply may raise it (cancel, basic.qos,
  // consume), and a delete landing between that cancel and consume closes the channel with a 404 instead of
  // cancelling the consumer: the consumer then reconnects and declares the queue again, but logs no cancel.
  const { input, replies, consumer } = await consumerOn('cancel.input', { PREFETCH: '32' });
  await client.publish(input, ROW, { correlationId: 'before-delete' });
  assert.ok(
    (await client.collect(replies, (rs) => rs.length === 1, 10_000)).some((r) => r.correlationId === 'before-delete'),
  );

  await client.deleteQueues(input);
  await consumer.waitFor('consumer cancelled by the broker', 10_000);
  // Subscribed again: a second "consuming" line.
  const deadline = Date.now() + 10_000;
  while (logLines(consumer.output(), 'consuming').length < 2 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  assert.equal(logLines(consumer.output(), 'consuming').length, 2, 'the consumer subscribed again');

  await client.publish(input, ROW, { correlationId: 'after-redeclare' });
  const got = await client.collect(replies, (rs) => rs.some((r) => r.correlationId === 'after-redeclare'), 10_000);
  assert.equal(
    got.find((r) => r.correlationId === 'after-redeclare')?.status,
    'ok',
    'a message published after the re-declaration is answered',
  );
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
});

test('deleting REPLY_QUEUE does not lose the next reply: the consumer declares it again and publishes the reply again', {
  timeout: 30_000,
}, async () => {
  const { input, replies, consumer } = await consumerOn('cancel.replyq');
  await client.deleteQueues(replies);
  await client.publish(input, ROW, { correlationId: 'after-reply-queue-deleted' });

  assert.ok(await until(replies, 1), 'the reply queue exists again and holds the reply');
  const [reply] = await client.collect(replies, (rs) => rs.length === 1, 5000);
  assert.equal(reply?.correlationId, 'after-reply-queue-deleted');
  assert.equal(reply.status, 'ok');
  assert.ok(
    logLines(consumer.output(), 'reply returned unroutable').some(
      (l) => l.correlationId === 'after-reply-queue-deleted',
    ),
    'the return was logged',
  );
  // Acked, not merely held: a delivery held unacked also reads 0 ready while the consumer runs, and goes
  // back to ready once its channel closes. (rabbitmqctl's unacked count lags by the stats interval.)
  assert.equal(await consumer.stop('SIGTERM'), 0);
  assert.equal(await client.messageCount(input), 0, 'the input is acked');
});

test('a reply whose replyTo queue is gone (the caller left) is logged with its correlation id, and the input is acked', {
  timeout: 30_000,
}, async () => {
  const { input, consumer } = await consumerOn('cancel.replyto');
  // An exclusive queue dies with its connection: the caller has gone.
  const caller = await TestClient.connect();
  const gone = uniqueName('cancel.caller');
  const ch = await caller.connection.createChannel();
  await ch.assertQueue(gone, { exclusive: true });
  await caller.close();

  await client.publish(input, ROW, { correlationId: 'caller-left', replyTo: gone });
  await consumer.waitFor('"correlationId":"caller-left"', 10_000);
  const returned = logLines(consumer.output(), 'reply returned unroutable').find(
    (l) => l.correlationId === 'caller-left',
  );
  assert.ok(returned, 'the returned reply is logged with the correlation id');
  assert.equal(returned.routingKey, gone);

  // Acked, not merely delivered: after the consumer stops, nothing comes back to the queue.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await consumer.stop('SIGTERM'), 0);
  assert.equal(await client.messageCount(input), 0, 'the input queue ends empty');
});

test('in one batch, replies that come back unroutable and replies that do not each get their own outcome: the rest are answered once, every input is acked', {
  timeout: 30_000,
}, async () => {
  // A long delay so all twenty are scored, and their replies published, as one batch.
  const { input, replies, consumer } = await consumerOn('cancel.mixed', {
    MAX_BATCH_DELAY_MS: '500',
    BATCH_DELAY_MIN_LOAD: '0',
  });
  const gone = uniqueName('cancel.mixed.gone');
  const leaving = new Set([3, 11, 17]);
  await client.publishMany(
    input,
    Array.from({ length: 20 }, (_, i) => ({
      body: ROW,
      options: { correlationId: `m-${i}`, ...(leaving.has(i) ? { replyTo: gone } : {}) },
    })),
  );
  const got = await client.collect(replies, (rs) => rs.length >= 17, 10_000);
  const ids = got.map((r) => r.correlationId).sort();
  const expected = Array.from({ length: 20 }, (_, i) => i)
    .filter((i) => !leaving.has(i))
    .map((i) => `m-${i}`)
    .sort();
  assert.deepEqual(ids, expected, 'each reply to REPLY_QUEUE arrives once; none of the unroutable ones does');
  const returned = () =>
    logLines(consumer.output(), 'reply returned unroutable')
      .map((l) => l.correlationId)
      .sort();
  const deadline = Date.now() + 5000;
  while (returned().length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(returned(), ['m-11', 'm-17', 'm-3']);
  assert.equal(await consumer.stop('SIGTERM'), 0);
  assert.equal(await client.messageCount(input), 0, 'every input is acked');
  assert.equal(await client.messageCount(replies), 0, 'and no reply was sent twice');
});
