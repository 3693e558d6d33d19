/**
 * Scaling out is running more consumers on the same queue: the broker spreads the messages between
 * them, and each message is still answered exactly once. Which consumer answered is read from each
 * one's own /metrics, not from the replies (which carry nothing of the consumer).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestClient, queuesOf, tally, uniqueName } from '../support/broker.js';
import { startConsumer, type ConsumerProcess } from '../support/consumer-process.js';
import { freePort, scrapeUntil } from '../support/http.js';

const input = uniqueName('scale');
const replies = uniqueName('scale.replies');
const CONSUMERS = 3;
const MESSAGES = 3000;
let client: TestClient;
const consumers: Array<{ process: ConsumerProcess; port: number }> = [];

before(async () => {
  client = await TestClient.connect();
  for (let i = 0; i < CONSUMERS; i++) {
    const port = await freePort();
    // A modest prefetch: the first consumer up must not take the whole queue before the others subscribe.
    const process = startConsumer({
      INPUT_QUEUE: input,
      REPLY_QUEUE: replies,
      HTTP_PORT: String(port),
      PREFETCH: '50',
      CONCURRENCY: '1',
    });
    consumers.push({ process, port });
  }
  await Promise.all(consumers.map((c) => c.process.waitFor('"msg":"consuming"', 60_000)));
});

after(async () => {
  await Promise.all(consumers.map((c) => c.process.stop()));
  await client.deleteQueues(...queuesOf(input, replies));
  await client.close();
});

test('three consumers on one queue share the work, and every message is answered exactly once', async (t) => {
  const ids = Array.from({ length: MESSAGES }, (_, i) => `m-${i}`);
  await client.publishMany(
    input,
    ids.map((id, i) => ({ body: { data: [[5.1 + (i % 10) / 10, 3.5, 1.4, 0.2]] }, options: { correlationId: id } })),
  );
  const got = await client.collect(replies, (rs) => rs.length >= MESSAGES, 60_000);
  // A little longer, so a duplicate would have time to show up.
  const late = await client.collect(replies, () => false, 500);
  const { missing, duplicated } = tally(ids, [...got, ...late]);
  assert.deepEqual(missing, []);
  assert.equal(duplicated, 0);
  assert.ok(got.every((r) => r.status === 'ok'));

  const answered = await Promise.all(
    consumers.map(async ({ port }) => {
      const m = await scrapeUntil(port, (s) => s.get('scorer_in_flight') === 0);
      return m.get('scorer_messages_total{status="ok"}') ?? 0;
    }),
  );
  t.diagnostic(`answers per consumer: ${answered.join(', ')}`);
  assert.equal(
    answered.reduce((a, b) => a + b, 0),
    MESSAGES,
    `answers per consumer: ${answered.join(', ')}`,
  );
  for (const n of answered) assert.ok(n >= MESSAGES * 0.05, `each consumer took a share: ${answered.join(', ')}`);
});
