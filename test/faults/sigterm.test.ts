import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer, type ConsumerProcess } from '../support/consumer-process.js';
import { ReplyWatcher, idsOf, numbered, quiet, report } from '../support/faults.js';

const input = uniqueName('sigterm');
const replies = uniqueName('sigterm.replies');
const env = { INPUT_QUEUE: input, REPLY_QUEUE: replies, CONNECTION_NAME: uniqueName('sigterm.conn') };
let client: TestClient;
let watcher: ReplyWatcher;
const consumers: ConsumerProcess[] = [];

before(async () => {
  client = await TestClient.connect();
  watcher = await ReplyWatcher.start(client, replies);
});

after(async () => {
  await Promise.all(consumers.map((c) => c.stop('SIGKILL')));
  await watcher.stop();
  await client.deleteQueues(...queuesOf(input, replies));
  await client.close();
});

test('SIGTERM mid-stream finishes what is in flight and exits 0; a restart answers the rest: nothing lost, nothing answered twice', { timeout: 60_000 }, async (t) => {
  const N = 4000;
  const items = numbered('term', N);
  const ids = idsOf(items);

  const first = startConsumer(env);
  consumers.push(first);
  await first.waitFor('"msg":"consuming"');
  const published = client.publishMany(input, items);
  assert.ok(await watcher.waitUntil(() => watcher.arrivals.length >= N * 0.25, 30_000), 'the first consumer answered a quarter of the inputs');
  first.child.kill('SIGTERM');
  assert.equal(await first.exited, 0, 'a graceful stop exits 0');
  assert.match(first.output(), /"msg":"stopped"/);
  const answeredByFirst = watcher.answered(ids);
  await published;

  const second = startConsumer(env);
  consumers.push(second);
  await second.waitFor('"msg":"consuming"');
  assert.ok(await watcher.waitAll(ids, 30_000), `every input answered after the restart (${watcher.answered(ids)} of ${N})`);
  await quiet(watcher, 1000);

  const { missing, duplicated, duplicatedIds } = watcher.tally(ids);
  report(t, `sigterm: N=${N}, answered before the stop=${answeredByFirst}, lost=${missing.length}, duplicated=${duplicated}`);
  assert.deepEqual(missing, [], 'no input without a reply');
  assert.equal(duplicated, 0, `no input answered twice (e.g. ${duplicatedIds.slice(0, 5).join(', ')})`);
});
