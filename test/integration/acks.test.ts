/**
 * Acks through the real broker while an older input is still being scored: the inputs answered after
 * it are held for one `multiple` ack only briefly (ACK_HOLD_MS), then acked on their own, so a slow
 * input does not keep its neighbours unacked (and redelivered, should the consumer die) for its whole run.
 * And an input answered alone waits ACK_COALESCE_MS for later acks to go with, no longer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { TestClient } from '../support/broker.js';
import { consumersOfFile, type ConsumerProcess } from '../support/consumer-process.js';

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

const file = consumersOfFile();
const { consumers } = file;
after(() => rmSync(dir, { recursive: true, force: true }));

test('inputs answered while an older one is still being scored are acked within moments, not when it finishes', {
  timeout: 60_000,
}, async () => {
  const { client } = file;
  const q = consumers.queuesFor('acks.held');
  const consumer = consumers.startOn(q, { ENTRY_SCRIPT: SCRIPT, CONCURRENCY: '2', MAX_BATCH_DELAY_MS: '0' });
  await consumer.waitFor('"msg":"consuming"');
  // The slow one first, on its own: it holds the oldest delivery tag for 20 s in one isolate.
  await client.publish(q.input, { data: { slow: true } }, { correlationId: 'slow' });
  await new Promise((r) => setTimeout(r, 500));
  await client.publishMany(
    q.input,
    Array.from({ length: 10 }, (_, i) => ({ body: { data: {} }, options: { correlationId: `fast-${i}` } })),
  );
  const got = await client.collect(q.replies, (rs) => rs.length === 10, 15_000);
  assert.equal(got.length, 10, 'the ten fast inputs are answered by the other isolate');
  assert.ok(got.every((r) => r.correlationId?.startsWith('fast-')));
  await new Promise((r) => setTimeout(r, 500));

  // Killed now, the consumer leaves the broker to requeue whatever it has not acked: only the slow one.
  assert.equal(
    await requeuedAfterKill(client, consumer, q.input, 1),
    1,
    'the ten answered inputs were acked while the slow one ran',
  );
});

test('inputs answered one at a time are acked within moments: the wait for the acks after each (ACK_COALESCE_MS) ends on its own', {
  timeout: 60_000,
}, async () => {
  const { client } = file;
  const q = consumers.queuesFor('acks.lone');
  const consumer = consumers.startOn(q, { ENTRY_SCRIPT: SCRIPT });
  await consumer.waitFor('"msg":"consuming"');
  // Each alone: its reply is in before the next is published, so no later ack comes to take it along.
  for (let i = 0; i < 5; i++) {
    await client.publish(q.input, { data: {} }, { correlationId: `lone-${i}` });
    const got = await client.collect(q.replies, (rs) => rs.length === 1, 15_000);
    assert.equal(got[0]?.correlationId, `lone-${i}`);
  }
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await requeuedAfterKill(client, consumer, q.input, 0), 0, 'every answered input was acked');
});

/**
 * SIGKILLs the consumer and returns how many inputs the broker put back in the queue: those it had not
 * acked. Waits for `expected` of them to show (a requeue after a kill takes a moment), then a little more.
 */
async function requeuedAfterKill(
  client: TestClient,
  consumer: ConsumerProcess,
  input: string,
  expected: number,
): Promise<number> {
  await consumer.stop('SIGKILL');
  const deadline = Date.now() + 10_000;
  while ((await client.messageCount(input)) < expected && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 500));
  return client.messageCount(input);
}
