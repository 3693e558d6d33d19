/**
 * The bytes held in flight come back to 0 once inputs are settled, whatever happened to their bodies on
 * the way: a large body goes to its isolate without a copy (its Buffer is empty afterwards), and a
 * budget counted from the emptied body would never be given back and stop the consumer for good.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestClient } from '../support/broker.js';
import { TestConsumers } from '../support/consumer-process.js';
import { freePort, scrapeUntil } from '../support/http.js';

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

after(async () => {
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
