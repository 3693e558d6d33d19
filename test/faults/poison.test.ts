import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { WatchedRun, idsOf, logLines, numbered, report } from '../support/faults.js';
import { freePort, scrapeUntil } from '../support/http.js';

// A user's entry script that takes its own process down on one input: it runs in a child process.
const SCRIPT = `
export const modelName = 'poison-test';
export function init() {}
export function run(data: string) {
  if (JSON.parse(data) === 'poison') process.exit(1);
  return { echo: JSON.parse(data) };
}
`;

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'scorer-poison-'));
  writeFileSync(join(dir, 'score.ts'), SCRIPT);
});

after(() => rmSync(dir, { recursive: true, force: true }));

for (const queueType of ['quorum', 'classic'] as const) {
  test(`a message that kills the entry script's process is dead-lettered to <INPUT_QUEUE>.dead after the delivery limit, unanswered, while its neighbours are all answered (${queueType} queue)`, {
    timeout: 60_000,
  }, async (t) => {
    const run = await WatchedRun.open(`poison.${queueType}`, { queueType });
    t.after(() => run.close());
    const { client, input, watcher } = run;
    const dead = `${input}.dead`;
    const port = await freePort();
    const consumer = run.start({
      QUEUE_TYPE: queueType,
      DELIVERY_LIMIT: '2',
      ENTRY_SCRIPT: join(dir, 'score.ts'),
      HTTP_PORT: String(port),
    });
    await consumer.waitFor('"msg":"consuming"');

    const good = numbered('good', 200, (i) => ({ data: i }));
    const items = [
      ...good.slice(0, 100),
      { body: { data: 'poison' }, options: { correlationId: 'poison' } },
      ...good.slice(100),
    ];
    await client.publishMany(input, items);

    const ids = idsOf(good);
    assert.ok(
      await watcher.waitAll(ids, 30_000),
      `every good message answered (${watcher.answered(ids)} of ${ids.length})`,
    );
    for (const id of ids) {
      const [reply] = watcher.of(id);
      assert.equal(reply.status, 'ok', `${id} answered ok`);
      assert.deepEqual(JSON.parse(reply.body), { echo: Number(id.slice('good-'.length)) });
    }

    // Dead-lettered once the broker has delivered it past the limit.
    const deadline = Date.now() + 30_000;
    while ((await client.messageCount(dead)) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await client.messageCount(dead), 1, `the poison message is in ${dead}`);
    assert.equal(await client.messageCount(input), 0, 'the input queue is empty');

    const ch = await client.connection.createChannel();
    const msg = await ch.get(dead, { noAck: true });
    await ch.close();
    assert.ok(msg, 'a dead-lettered message to read');
    assert.equal(msg.properties.correlationId, 'poison');
    assert.deepEqual(JSON.parse(msg.content.toString()), { data: 'poison' });
    const headers = msg.properties.headers ?? {};
    const [death] = headers['x-death'] as Array<{ reason: string; queue: string; count: number }>;
    assert.equal(death.queue, input, 'x-death names the input queue');
    assert.equal(death.count, 1);
    // The consumer logs each death with the delivery's x-delivery-count (the dead queue's own delivery resets the header).
    const counts = logLines(consumer.output(), 'input requeued')
      .concat(logLines(consumer.output(), 'input dead-lettered'))
      .filter((l) => l.correlationId === 'poison')
      .map((l) => l.deliveryCount as number)
      .sort();
    const deathsSeen = counts.length;
    if (queueType === 'quorum') {
      // x-delivery-limit 2: delivered three times (x-delivery-count 0, 1, 2), then dead-lettered by the broker.
      assert.equal(death.reason, 'delivery_limit');
      assert.deepEqual(counts, [0, 1, 2], 'the script process died on each of three deliveries');
    } else {
      // No delivery count on a classic queue: the consumer rejects it on its second death.
      assert.equal(death.reason, 'rejected');
      assert.equal(deathsSeen, 2, 'the script process died twice');
    }
    // Every death but the last requeued it; the last one (the broker's limit, or the consumer's reject) dead-lettered it.
    const m = await scrapeUntil(
      port,
      (s) => s.get('scorer_dead_lettered_total') === 1 && s.get('scorer_requeued_total') === deathsSeen - 1,
    );
    assert.equal(
      m.get('scorer_requeued_total'),
      deathsSeen - 1,
      'scorer_requeued_total counts the deaths before the last',
    );
    assert.equal(m.get('scorer_dead_lettered_total'), 1, 'scorer_dead_lettered_total counts the poison message once');
    assert.equal(watcher.of('poison').length, 0, 'the poison message got no reply');
    assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
    report(
      t,
      `poison (${queueType}): ${ids.length} good answered, poison dead-lettered after ${deathsSeen} deaths, x-death reason=${death.reason}, x-delivery-counts seen=[${counts.join(',')}]`,
    );
  });
}

test('ANSWER_POISON=true on a classic queue: the caller of a message that kills the entry script gets one POISON reply naming the dead-letter queue, and the message is parked there', {
  timeout: 60_000,
}, async (t) => {
  const run = await WatchedRun.open('poison.answered', { queueType: 'classic' });
  t.after(() => run.close());
  const { client, input, watcher } = run;
  const dead = `${input}.dead`;
  const consumer = run.start({ QUEUE_TYPE: 'classic', ANSWER_POISON: 'true', ENTRY_SCRIPT: join(dir, 'score.ts') });
  await consumer.waitFor('"msg":"consuming"');
  const good = numbered('good', 50, (i) => ({ data: i }));
  await client.publishMany(input, [
    ...good.slice(0, 25),
    { body: { data: 'poison' }, options: { correlationId: 'poison' } },
    ...good.slice(25),
  ]);
  const ids = idsOf(good);
  assert.ok(
    await watcher.waitAll([...ids, 'poison'], 30_000),
    `every message answered (${watcher.answered([...ids, 'poison'])} of ${ids.length + 1})`,
  );
  const deadline = Date.now() + 30_000;
  while ((await client.messageCount(dead)) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await client.messageCount(dead), 1, `the poison message is in ${dead}`);
  await watcher.quiet(500);
  const replies = watcher.of('poison');
  assert.equal(replies.length, 1, 'one POISON reply');
  assert.equal(replies[0].status, 'error');
  assert.equal(replies[0].errorCode, 'POISON');
  assert.equal(replies[0].deadLetterQueue, dead);
  assert.match(
    JSON.parse(replies[0].body) as string,
    new RegExp(`dead-lettered to queue '${dead.replace(/\./g, '\\.')}'`),
  );
  for (const id of ids) assert.equal(watcher.of(id)[0].status, 'ok');
});
