/**
 * Replies the broker refuses: a caller's replyTo queue full with x-overflow reject-publish nacks every
 * reply to it. Those inputs are dead-lettered after REPLY_ATTEMPTS refusals spanning REPLY_REFUSED_MIN_MS,
 * their neighbours are answered and acked meanwhile, and the consumer never stalls behind them. A queue
 * that refuses for less than REPLY_REFUSED_MIN_MS (as a quorum queue does while it elects a leader) gets
 * its replies once it takes them again, however many tries that took.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer } from '../support/consumer-process.js';
import { IRIS_ROW, ReplyWatcher, idsOf, numbered } from '../support/faults.js';
import { freePort, scrapeUntil } from '../support/http.js';

test('inputs whose replyTo queue refuses every reply are dead-lettered within bounded time; the others are answered once and nothing stalls', {
  timeout: 90_000,
}, async () => {
  const client = await TestClient.connect();
  const input = uniqueName('refused');
  const replies = uniqueName('refused.replies');
  const full = uniqueName('refused.full');
  await client.refusingQueue(full);
  const watcher = await ReplyWatcher.start(client, replies, 'classic');
  const httpPort = await freePort();
  const consumer = startConsumer({
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    HTTP_PORT: String(httpPort),
    REPLY_ATTEMPTS: '3',
    REPLY_REFUSED_MIN_MS: '1000',
    RECONNECT_INITIAL_DELAY_MS: '50',
    RECONNECT_MAX_DELAY_MS: '200',
    PREFETCH: '64',
  });
  try {
    await consumer.waitFor('"msg":"consuming"');
    const N = 600;
    const BAD = new Set([3, 50, 51, 200, 333, 599]);
    const good = numbered('refused', N).filter((_, i) => !BAD.has(i));
    const items = Array.from({ length: N }, (_, i) =>
      BAD.has(i)
        ? { body: IRIS_ROW, options: { correlationId: `bad-${i}`, replyTo: full } }
        : good.find((g) => g.options.correlationId === `refused-${i}`)!,
    );
    await client.publishMany(input, items);
    assert.ok(
      await watcher.waitAll(idsOf(good), 60_000),
      `every good input answered (${watcher.answered(idsOf(good))} of ${good.length})`,
    );
    const m = await scrapeUntil(
      httpPort,
      (s) => (s.get('scorer_replies_refused_total{reason="reply refused"}') ?? 0) >= BAD.size,
      30_000,
    );
    assert.equal(
      m.get('scorer_replies_refused_total{reason="reply refused"}'),
      BAD.size,
      'each refused input dead-lettered once',
    );
    assert.ok((m.get('scorer_reply_retries_total{reason="nacked"}') ?? 0) >= BAD.size, 'the retries counted');
    assert.equal(m.get('scorer_in_flight'), 0, 'nothing left in flight');
    await watcher.quiet(500);
    const { missing, duplicated } = watcher.tally(idsOf(good));
    assert.deepEqual(missing, []);
    assert.equal(duplicated, 0, 'no good input answered twice');
    // Stop first: an unacked delivery also reads 0 ready while the consumer runs.
    await consumer.stop('SIGTERM');
    assert.equal(
      await client.messageCount(input),
      0,
      'every input settled (none back in the queue after the consumer left)',
    );
    assert.equal(
      await client.messageCount(`${input}.dead`),
      BAD.size,
      'the refused inputs are in the dead-letter queue',
    );
  } finally {
    await consumer.stop('SIGKILL');
    await watcher.stop();
    await client.deleteQueues(...queuesOf(input, replies), full);
    await client.close();
  }
});

test('inputs whose replyTo refuses replies for less than REPLY_REFUSED_MIN_MS are answered once it takes them again, well past REPLY_ATTEMPTS tries', {
  timeout: 90_000,
}, async () => {
  const client = await TestClient.connect();
  const input = uniqueName('refused-a-while');
  const replies = uniqueName('refused-a-while.replies');
  const full = uniqueName('refused-a-while.full');
  await client.refusingQueue(full);
  const watcher = await ReplyWatcher.start(client, replies, 'classic');
  let caller: ReplyWatcher | undefined;
  const httpPort = await freePort();
  const ATTEMPTS = 3;
  const consumer = startConsumer({
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    HTTP_PORT: String(httpPort),
    REPLY_ATTEMPTS: String(ATTEMPTS),
    REPLY_REFUSED_MIN_MS: '60000',
    RECONNECT_INITIAL_DELAY_MS: '50',
    RECONNECT_MAX_DELAY_MS: '200',
  });
  try {
    await consumer.waitFor('"msg":"consuming"');
    const N = 100;
    const BAD = new Set([3, 50, 99]);
    const items = numbered('refused-a-while', N).map((item, i) =>
      BAD.has(i) ? { body: IRIS_ROW, options: { correlationId: `bad-${i}`, replyTo: full } } : item,
    );
    const good = items.filter((_, i) => !BAD.has(i));
    await client.publishMany(input, items);
    assert.ok(await watcher.waitAll(idsOf(good), 30_000), 'the neighbours answered while the replyTo refuses');
    // Each refused reply tried well past REPLY_ATTEMPTS: counting tries alone would have dead-lettered it.
    await scrapeUntil(
      httpPort,
      (s) => (s.get('scorer_reply_retries_total{reason="nacked"}') ?? 0) >= 3 * ATTEMPTS * BAD.size,
      30_000,
    );
    // The caller reads its replyTo again: the filler goes, and with it the refusals.
    caller = await ReplyWatcher.start(client, full, 'classic');
    const bad = [...BAD].map((i) => `bad-${i}`);
    assert.ok(
      await caller.waitAll(bad, 30_000),
      `every refused input answered (${caller.answered(bad)} of ${BAD.size})`,
    );
    const m = await scrapeUntil(httpPort, (s) => s.get('scorer_in_flight') === 0, 30_000);
    assert.equal(m.get('scorer_replies_refused_total{reason="reply refused"}') ?? 0, 0, 'none dead-lettered');
    await caller.quiet(500);
    assert.equal(caller.tally(bad).duplicated, 0, 'each refused input answered once');
    await consumer.stop('SIGTERM');
    assert.equal(await client.messageCount(input), 0, 'every input settled');
    assert.equal(await client.messageCount(`${input}.dead`), 0, 'nothing dead-lettered');
  } finally {
    await consumer.stop('SIGKILL');
    await watcher.stop();
    await caller?.stop();
    await client.deleteQueues(...queuesOf(input, replies), full);
    await client.close();
  }
});
