/**
 * Acks through the real broker while an older input is still being scored: the inputs answered after
 * it are held for one `multiple` ack only briefly (ACK_HOLD_MS), then acked on their own, so a slow
 * input does not keep its neighbours unacked (and redelivered, should the consumer die) for its whole run.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer } from '../support/consumer-process.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-acks-'));
const SCRIPT = join(dir, 'slow-or-fast.ts');
writeFileSync(
  SCRIPT,
  `
export function init(): void {}
export async function run(data: string) {
  const { slow } = JSON.parse(data) as { slow?: boolean };
  if (slow) await new Promise((r) => setTimeout(r, 20_000));
  return { slow: !!slow };
}
`,
);

after(() => rmSync(dir, { recursive: true, force: true }));

test('inputs answered while an older one is still being scored are acked within moments, not when it finishes', {
  timeout: 60_000,
}, async () => {
  const client = await TestClient.connect();
  const input = uniqueName('acks.held');
  const replies = uniqueName('acks.held.replies');
  const consumer = startConsumer({
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    ENTRY_SCRIPT: SCRIPT,
    CONCURRENCY: '2',
    MAX_BATCH_DELAY_MS: '0',
  });
  try {
    await consumer.waitFor('"msg":"consuming"');
    // The slow one first, on its own: it holds the oldest delivery tag for 20 s in one isolate.
    await client.publish(input, { data: { slow: true } }, { correlationId: 'slow' });
    await new Promise((r) => setTimeout(r, 500));
    await client.publishMany(
      input,
      Array.from({ length: 10 }, (_, i) => ({ body: { data: {} }, options: { correlationId: `fast-${i}` } })),
    );
    const got = await client.collect(replies, (rs) => rs.length === 10, 15_000);
    assert.equal(got.length, 10, 'the ten fast inputs are answered by the other isolate');
    assert.ok(got.every((r) => r.correlationId?.startsWith('fast-')));
    await new Promise((r) => setTimeout(r, 500));

    // Killed now, the consumer leaves the broker to requeue whatever it has not acked: only the slow one.
    await consumer.stop('SIGKILL');
    const deadline = Date.now() + 10_000;
    let ready = await client.messageCount(input);
    while (ready < 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await client.messageCount(input);
    }
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await client.messageCount(input), 1, 'the ten answered inputs were acked while the slow one ran');
  } finally {
    await consumer.stop('SIGKILL');
    await client.deleteQueues(...queuesOf(input, replies));
    await client.close();
  }
});
