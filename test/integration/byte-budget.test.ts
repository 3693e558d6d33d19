/**
 * The bytes held in flight come back to 0 once inputs are settled, whatever happened to their bodies on
 * the way: a large body goes to its isolate without a copy (its Buffer is empty afterwards), and a
 * budget counted from the emptied body would never be given back and stop the consumer for good.
 * And the body itself is let go once scored, not when its input is settled: inputs whose replies wait
 * for the broker hold their place in the budget, not their memory.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestClient, uniqueName } from '../support/broker.js';
import { TestConsumers } from '../support/consumer-process.js';
import { freePort, scrape, scrapeUntil } from '../support/http.js';

const consumers = new TestConsumers();
const q = consumers.queuesFor('budget.count');
let client: TestClient;
let port: number;

before(async () => {
  client = await TestClient.connect();
  port = await freePort();
  consumers.startOn(q, { HTTP_PORT: String(port), MAX_MESSAGE_BYTES: String(4 * 1024 * 1024) });
  await consumers.allConsuming();
});

const held = consumers.queuesFor('budget.release');
const refusing = uniqueName('budget.refusing');

after(async () => {
  await client.deleteQueues(refusing);
  await consumers.close(client, 'SIGTERM');
  await client.close();
});

test('a large body scored alone gives its bytes back to the in-flight budget once answered', async () => {
  // One message at a time, each over 64 KiB: each is a batch of one, handed to the isolate without a copy.
  for (let i = 0; i < 3; i++) {
    const body = { data: [[5.1, 3.5, 1.4, 0.2]], pad: 'x'.repeat(200_000) };
    const got = await client.ask(q.input, q.replies, [{ id: `large-${i}`, body }]);
    assert.equal(got.get(`large-${i}`)?.status, 'ok');
  }
  const m = await scrapeUntil(port, (metrics) => metrics.get('scorer_in_flight') === 0);
  assert.equal(m.get('scorer_in_flight_bytes'), 0, 'no bytes left counted as held');
});

test('a body is let go once scored: inputs whose replies the broker keeps refusing hold their budget, not their bytes', async () => {
  // Every reply to this queue is nacked (full, reject-publish) and retried every 2 s: the inputs stay held, scored.
  await client.refusingQueue(refusing);
  const releasePort = await freePort();
  const consumer = consumers.startOn(
    held,
    {
      HTTP_PORT: String(releasePort),
      INLINE_SCORING: 'on',
      REPLY_ATTEMPTS: '1000',
      RECONNECT_INITIAL_DELAY_MS: '2000',
      RECONNECT_MAX_DELAY_MS: '2000',
    },
    { nodeArgs: ['--expose-gc', '--import', fileURLToPath(new URL('../support/gc-on-signal.mjs', import.meta.url))] },
  );
  await consumer.waitFor('"msg":"consuming"');
  // Under the first prefetch the byte budget allows (MAX_IN_FLIGHT_BYTES / MAX_MESSAGE_BYTES = 32), raised only as inputs are settled.
  const N = 24;
  const BODY_BYTES = 1 << 20;
  await client.publishMany(
    held.input,
    Array.from({ length: N }, (_, i) => ({
      body: { data: [[5.1, 3.5, 1.4, 0.2]], pad: 'x'.repeat(BODY_BYTES) },
      options: { correlationId: `held-${i}`, replyTo: refusing },
    })),
  );
  // Every input scored (the batch sizes' sum), every reply refused at least once.
  await scrapeUntil(
    releasePort,
    (m) =>
      (m.get('scorer_batch_size_sum') ?? 0) >= N && (m.get('scorer_reply_retries_total{reason="nacked"}') ?? 0) >= N,
    60_000,
  );
  // What a full collection cannot free is what the consumer still references.
  let external = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 20 && external >= 16 * 1024 * 1024; i++) {
    consumer.child.kill('SIGUSR2');
    await new Promise((r) => setTimeout(r, 250));
    external = (await scrape(releasePort)).get('nodejs_external_memory_bytes') ?? Number.POSITIVE_INFINITY;
  }
  const m = await scrape(releasePort);
  assert.equal(m.get('scorer_in_flight'), N, 'every input still held, its reply refused and retried');
  assert.ok(
    (m.get('scorer_in_flight_bytes') ?? 0) >= N * BODY_BYTES,
    'the budget still counts their bodies until they are settled',
  );
  assert.ok(
    external < 16 * 1024 * 1024,
    `the consumer's external memory after a full collection: ${(external / 2 ** 20).toFixed(1)} MiB, with ${N} bodies of 1 MiB scored and held`,
  );
  // Its replies would wait for the refusing queue through a graceful stop.
  await consumer.stop('SIGKILL');
});
