/**
 * Issue 12, case 5: the broker's consumer_timeout reached by slow scoring, on a RabbitMQ node of this
 * test's own (a consumer_timeout of seconds on the shared broker would break everyone else's tests).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer, type ConsumerProcess } from '../support/consumer-process.js';
import { ReplyWatcher, idsOf, logLines, numbered, report } from '../support/faults.js';
import { startPrivateBroker, type PrivateBroker } from '../support/private-broker.js';

const CONSUMER_TIMEOUT_MS = 5000;
const RUN_MS = 1500;
const N = 12;

// A run-only entry script of about RUN_MS per message: a handful of held deliveries outlive consumer_timeout.
const RUN = `
export const modelName = 'consumer-timeout-test';
export function init() {}
export async function run(data: string) {
  await new Promise((r) => setTimeout(r, ${RUN_MS}));
  return { echo: JSON.parse(data) };
}
`;

let dir: string;
let broker: PrivateBroker | undefined;
let consumer: ConsumerProcess | undefined;
let watcher: ReplyWatcher | undefined;
let client: TestClient | undefined;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scorer-consumer-timeout-'));
  writeFileSync(join(dir, 'run.ts'), RUN);
  broker = await startPrivateBroker({
    config: [`consumer_timeout = ${CONSUMER_TIMEOUT_MS}`],
    // RabbitMQ 3.10 checks consumer_timeout on the channel's tick, every 60 s by default: a timeout of
    // seconds would only fire a minute late. The tick has no rabbitmq.conf key.
    advanced: ['{channel_tick_interval, 1000}'],
  });
});

after(async () => {
  await consumer?.stop('SIGKILL');
  await watcher?.stop();
  await client?.close().catch(() => {});
  // The node and its queues go with it.
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** How many times the node closed a channel for a delivery not acknowledged within consumer_timeout. */
function timeoutsLogged(b: PrivateBroker): number {
  const logDir = join(b.dir, 'log');
  let n = 0;
  for (const f of readdirSync(logDir))
    if (f.endsWith('.log'))
      n += readFileSync(join(logDir, f), 'utf8').match(/acknowledgement.*timed out/g)?.length ?? 0;
  return n;
}

test('consumer_timeout reached by slow scoring (run-only script, PREFETCH held past the timeout): the consumer reconnects, every input is answered, none dead-lettered, and it keeps taking work', {
  timeout: 150_000,
}, async (t) => {
  const b = broker!;
  const input = uniqueName('ctimeout');
  const replies = uniqueName('ctimeout.replies');
  const [, dead] = queuesOf(input, replies);
  client = await TestClient.connect(b.url);
  watcher = await ReplyWatcher.start(client, replies);
  consumer = startConsumer({
    AMQP_URL: b.url,
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    CONNECTION_NAME: uniqueName('ctimeout.conn'),
    ENTRY_SCRIPT: join(dir, 'run.ts'),
    // Every input of the backlog held at once, scored one after another: the last waits N x RUN_MS.
    PREFETCH: String(N),
    CONCURRENCY: '1',
    RUN_TIMEOUT_MS: '10000',
    BROKER_CONSUMER_TIMEOUT_MS: String(CONSUMER_TIMEOUT_MS),
    // Each close returns the held inputs and counts a delivery for each; the default (3) dead-letters the
    // tail of a backlog after three closes, whatever the consumer does. Here the limit is out of the way so
    // the test measures the consumer: whether it loses, strands or only dead-letters anything itself.
    DELIVERY_LIMIT: '50',
  });
  await consumer.waitFor('"msg":"consuming"');

  const warnings = logLines(consumer.output(), 'risky settings');
  assert.equal(warnings.length, 1, 'the boot warns that the settings can reach consumer_timeout');
  assert.match(String(warnings[0].warning), /consumer_timeout/);

  const backlog = numbered('backlog', N, (i) => ({ data: i }));
  const ids = idsOf(backlog);
  const startedAt = Date.now();
  await client.publishMany(input, backlog);
  assert.ok(
    await watcher.waitAll(ids, 100_000),
    `every input answered (${watcher.answered(ids)} of ${N}); output:\n${consumer.output().slice(-2000)}`,
  );
  const drainedMs = Date.now() - startedAt;
  const timeouts = timeoutsLogged(b);
  assert.ok(timeouts >= 1, 'the broker closed the channel at least once on consumer_timeout');

  // Still taking work on the channel it has now: a few more, answered.
  const later = numbered('later', 3, (i) => ({ data: 100 + i }));
  const laterAt = Date.now();
  await client.publishMany(input, later);
  assert.ok(await watcher.waitAll(idsOf(later), 30_000), 'inputs published after the drain are answered');
  const laterMs = Date.now() - laterAt;
  await watcher.quiet(2000);

  for (const id of [...ids, ...idsOf(later)]) {
    const ok = watcher.of(id).filter((a) => a.status === 'ok');
    assert.ok(ok.length >= 1, `${id} answered ok`);
  }
  const { missing, duplicated } = watcher.tally([...ids, ...idsOf(later)]);
  assert.deepEqual(missing, [], 'no input lost');
  assert.equal(await client.messageCount(dead), 0, 'nothing dead-lettered');
  assert.equal(await client.messageCount(input), 0, 'the input queue is empty');
  // Each close can leave at most the one input being scored answered but unacked (its ack went with the
  // channel); the answered record settles its redelivery without a second reply, when it works.
  assert.ok(duplicated <= timeouts, `duplicates bounded by the closes (${duplicated} for ${timeouts} closes)`);
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
  report(
    t,
    `consumer_timeout (${CONSUMER_TIMEOUT_MS} ms, PREFETCH ${N}, CONCURRENCY 1, run ${RUN_MS} ms): N=${N}, lost 0, duplicated ${duplicated}, dead-lettered 0, channel closes ${timeouts}, backlog answered in ${drainedMs} ms, 3 later inputs answered in ${laterMs} ms`,
  );
});
