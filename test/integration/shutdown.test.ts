/**
 * CONTRACT §2 under normal operation: a SIGTERM (a deploy, a scale-down) finishes what is in flight
 * and exits 0; whatever it had not taken is answered after a restart: exactly one reply per input.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TestClient, queuesOf, tally, uniqueName } from '../support/broker.js';
import { startConsumer, type ConsumerProcess } from '../support/consumer-process.js';

const input = uniqueName('shutdown');
const replies = uniqueName('shutdown.replies');
const consumers: ConsumerProcess[] = [];
let client: TestClient;

before(async () => {
  client = await TestClient.connect();
});

const dir = mkdtempSync(join(tmpdir(), 'scorer-shutdown-'));
const queues: string[] = [];

after(async () => {
  await Promise.all(consumers.map((c) => c.stop('SIGKILL')));
  await client.deleteQueues(...queuesOf(input, replies), ...queues);
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A consumer of its own queues; `env` added. */
async function consumerOn(
  prefix: string,
  env: Record<string, string> = {},
): Promise<{ input: string; replies: string; consumer: ConsumerProcess }> {
  const q = { input: uniqueName(prefix), replies: uniqueName(`${prefix}.replies`) };
  queues.push(...queuesOf(q.input, q.replies));
  const consumer = startConsumer({ INPUT_QUEUE: q.input, REPLY_QUEUE: q.replies, ...env });
  consumers.push(consumer);
  await consumer.waitFor('"msg":"consuming"');
  return { ...q, consumer };
}

test('SIGTERM while 1,000 messages flow exits 0, and after a restart every input has exactly one reply', async (t) => {
  // A small prefetch leaves most of the messages in the queue when the signal lands, for the restart to answer.
  const env = { INPUT_QUEUE: input, REPLY_QUEUE: replies, PREFETCH: '50' };
  const first = startConsumer(env);
  consumers.push(first);
  await first.waitFor('"msg":"consuming"');

  const ids = Array.from({ length: 1000 }, (_, i) => `shutdown-${i}`);
  let signalled!: () => void;
  const signalSent = new Promise<void>((resolve) => (signalled = resolve));
  let answered = 0;
  let sent = false;
  // The SIGTERM goes once replies are flowing: mid-stream, not before the first message or after the last.
  const collected = client.collect(
    replies,
    (rs) => {
      if (!sent && rs.length >= 50) {
        sent = true;
        first.child.kill('SIGTERM');
        signalled();
      }
      answered = rs.length;
      return tally(ids, rs).missing.length === 0;
    },
    60_000,
  );
  await client.publishMany(
    input,
    ids.map((id, i) => ({
      body: { data: [[4.3 + (i % 30) / 10, 3.0, 1.1 + (i % 50) / 10, 0.1 + (i % 20) / 10]] },
      options: { correlationId: id },
    })),
  );
  await signalSent;

  assert.equal(
    await first.exited,
    0,
    `the first consumer exits 0 after SIGTERM; output:\n${first.output().slice(-2000)}`,
  );
  assert.ok(first.output().includes('"msg":"stopped"'), 'it stopped the graceful way');
  const left = await client.messageCount(input);
  t.diagnostic(`replies read when the first consumer had exited: ${answered}; inputs left for the restart: ${left}`);
  assert.ok(left > 0, 'the first consumer stopped taking messages: some are left for the restart');

  const second = startConsumer(env);
  consumers.push(second);
  const got = await collected;
  const { missing, duplicated } = tally(ids, got);
  assert.equal(
    missing.length,
    0,
    `zero lost: ${missing.length} inputs without a reply, e.g. ${missing.slice(0, 5).join(', ')}`,
  );
  assert.equal(duplicated, 0, 'zero duplicates among the replies read');
  assert.ok(got.every((r) => r.status === 'ok'));

  // A late duplicate would arrive after the collection ended: stop the second consumer cleanly and look.
  assert.equal(await second.stop('SIGTERM'), 0);
  assert.equal(await client.messageCount(replies), 0, 'no reply arrived after every input had one');
  assert.equal(await client.messageCount(input), 0, 'every input acked');
});

test('SIGINT (Ctrl-C) stops the consumer the same graceful way: in-flight inputs answered and acked, exit 0', {
  timeout: 60_000,
}, async () => {
  const { input, replies, consumer } = await consumerOn('shutdown.sigint');
  const ids = Array.from({ length: 20 }, (_, i) => `sigint-${i}`);
  await client.publishMany(
    input,
    ids.map((id) => ({ body: { data: [[5.1, 3.5, 1.4, 0.2]] }, options: { correlationId: id } })),
  );
  const deadline = Date.now() + 30_000;
  while ((await client.messageCount(replies)) === 0 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  consumer.child.kill('SIGINT');
  assert.equal(await consumer.exited, 0, `exit 0 after SIGINT; output:\n${consumer.output().slice(-2000)}`);
  assert.ok(consumer.output().includes('"signal":"SIGINT"'), 'it logged the signal');
  assert.ok(consumer.output().includes('"msg":"stopped"'), 'it stopped the graceful way');
  // Nobody reads either queue now: each input has its reply, or (not taken, or taken and let go) waits in the queue again.
  const answered = await client.messageCount(replies);
  assert.ok(answered >= 1, 'it answered before it stopped');
  const settledBy = Date.now() + 10_000;
  while (answered + (await client.messageCount(input)) < ids.length && Date.now() < settledBy)
    await new Promise((r) => setTimeout(r, 50));
  assert.equal(
    answered + (await client.messageCount(input)),
    ids.length,
    'each input answered once, or waiting in the queue',
  );
});

// A run that never returns: only the grace period can end the shutdown.
const HANGS = `
export const modelName = 'hangs';
export function init() {}
export async function run(data: string) {
  if (JSON.parse(data) === 'hang') await new Promise(() => {});
  return { echo: JSON.parse(data) };
}
`;

test('a shutdown that outlasts SHUTDOWN_GRACE_MS exits 1, logging why, and the unfinished input goes back to the queue', {
  timeout: 60_000,
}, async () => {
  writeFileSync(join(dir, 'hangs.ts'), HANGS);
  const { input, replies, consumer } = await consumerOn('shutdown.grace', {
    ENTRY_SCRIPT: join(dir, 'hangs.ts'),
    RUN_TIMEOUT_MS: '600000',
    SHUTDOWN_GRACE_MS: '1000',
  });
  await client.publish(input, { data: 'before' }, { correlationId: 'before' });
  const [answered] = await client.collect(replies, (rs) => rs.length === 1, 30_000);
  assert.equal(answered?.correlationId, 'before', 'the consumer answers');
  await client.publish(input, { data: 'hang' }, { correlationId: 'hang' });
  // Delivered and being scored: a ready count of 0 (the delivery is held, unacked).
  const deadline = Date.now() + 10_000;
  while ((await client.messageCount(input)) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));

  consumer.child.kill('SIGTERM');
  assert.equal(
    await consumer.closed,
    1,
    `exit 1 once the grace period is over; output:\n${consumer.output().slice(-2000)}`,
  );
  assert.ok(
    consumer.output().includes('shutdown grace period over; exiting with messages still in flight'),
    'it logged why',
  );
  assert.ok(!consumer.output().includes('"msg":"stopped"'), 'not the graceful stop');
  // The broker requeues it once it sees the dead process's connection close: a moment after the exit.
  const requeuedBy = Date.now() + 10_000;
  while ((await client.messageCount(input)) !== 1 && Date.now() < requeuedBy)
    await new Promise((r) => setTimeout(r, 50));
  assert.equal(
    await client.messageCount(input),
    1,
    'the input it had not answered is back in the queue for the next consumer',
  );
});
