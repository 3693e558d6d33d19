/**
 * CONTRACT §2 under normal operation: a SIGTERM (a deploy, a scale-down) finishes what is in flight
 * and exits 0; whatever it had not taken is answered after a restart: exactly one reply per input.
 */
import assert from 'node:assert/strict';
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

after(async () => {
  await Promise.all(consumers.map((c) => c.stop('SIGKILL')));
  await client.deleteQueues(...queuesOf(input, replies));
  await client.close();
});

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
  await client.publishMany(input, ids.map((id, i) => ({ body: { data: [[4.3 + (i % 30) / 10, 3.0, 1.1 + (i % 50) / 10, 0.1 + (i % 20) / 10]] }, options: { correlationId: id } })));
  await signalSent;

  assert.equal(await first.exited, 0, `the first consumer exits 0 after SIGTERM; output:\n${first.output().slice(-2000)}`);
  assert.ok(first.output().includes('"msg":"stopped"'), 'it stopped the graceful way');
  const left = await client.messageCount(input);
  t.diagnostic(`replies read when the first consumer had exited: ${answered}; inputs left for the restart: ${left}`);
  assert.ok(left > 0, 'the first consumer stopped taking messages: some are left for the restart');

  const second = startConsumer(env);
  consumers.push(second);
  const got = await collected;
  const { missing, duplicated } = tally(ids, got);
  assert.equal(missing.length, 0, `zero lost: ${missing.length} inputs without a reply, e.g. ${missing.slice(0, 5).join(', ')}`);
  assert.equal(duplicated, 0, 'zero duplicates among the replies read');
  assert.ok(got.every((r) => r.status === 'ok'));

  // A late duplicate would arrive after the collection ended: stop the second consumer cleanly and look.
  assert.equal(await second.stop('SIGTERM'), 0);
  assert.equal(await client.messageCount(replies), 0, 'no reply arrived after every input had one');
  assert.equal(await client.messageCount(input), 0, 'every input acked');
});
