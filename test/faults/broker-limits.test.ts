/**
 * Broker settings that refuse a reply for good, on a node of the test's own: a reply over the broker's
 * max_message_size closes the publish channel. It is answered with a short REPLY_TOO_LARGE error and
 * its input dead-lettered, once, within moments; the other inputs are answered once; shutdown is clean.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TestClient, uniqueName } from '../support/broker.js';
import { TestConsumers } from '../support/consumer-process.js';
import { logLines, report, rssMiB } from '../support/faults.js';
import { startPrivateBroker, type PrivateBroker } from '../support/private-broker.js';
import { RestartProofWatcher } from '../support/restart-proof-watcher.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-limits-'));
const SCRIPT = join(dir, 'big-or-small.ts');
writeFileSync(
  SCRIPT,
  `
export function init(): void {}
export function run(data: string) {
  const { big } = JSON.parse(data) as { big?: boolean };
  return big ? 'x'.repeat(2 * 1024 * 1024) : { small: true };
}
`,
);
let broker: PrivateBroker;
const consumers = new TestConsumers();

before(async () => {
  broker = await startPrivateBroker({ config: ['max_message_size = 1048576'] });
});

after(async () => {
  await consumers.stopAll('SIGKILL');
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("a reply over the broker's max_message_size: a short error reply instead, the input dead-lettered, the rest answered once, a clean shutdown", {
  timeout: 120_000,
}, async (t) => {
  const input = uniqueName('limits');
  const replies = uniqueName('limits.replies');
  const client = await TestClient.connect(broker.url);
  const watcher = await RestartProofWatcher.start(broker.url, replies, 'classic');
  try {
    const consumer = consumers.start({
      AMQP_URL: broker.url,
      INPUT_QUEUE: input,
      REPLY_QUEUE: replies,
      ENTRY_SCRIPT: SCRIPT,
      RECONNECT_INITIAL_DELAY_MS: '100',
      RECONNECT_MAX_DELAY_MS: '500',
    });
    await consumer.waitFor('"msg":"consuming"');
    const N = 200;
    const BIG = new Set([7, 120]);
    const ids = Array.from({ length: N }, (_, i) => `limits-${i}`);
    const started = Date.now();
    await client.publishMany(
      input,
      ids.map((id, i) => ({ body: { data: { big: BIG.has(i) } }, options: { correlationId: id } })),
    );
    const all = await watcher.waitAll(ids, 60_000);
    assert.ok(
      all,
      `every input answered (${watcher.answered(ids)} of ${N}; missing ${watcher.tally(ids).missing.join(', ')}); consumer said:\n${consumer
        .output()
        .split('\n')
        .filter((l) => /"level":[45]/.test(l))
        .slice(-15)
        .join('\n')}`,
    );
    const answeredMs = Date.now() - started;
    await watcher.quiet(1000);
    for (const i of BIG) {
      const [r] = watcher.of(`limits-${i}`);
      assert.equal(r.status, 'error');
      assert.equal(r.errorCode, 'REPLY_TOO_LARGE');
    }
    const { missing, duplicated } = watcher.tally(ids);
    const dupOfSmall = watcher.tally(ids.filter((_, i) => !BIG.has(i))).duplicated;
    const rss = rssMiB(consumer.child.pid!) ?? 0;
    assert.equal(await consumer.stop('SIGTERM'), 0, 'shutdown within the grace period');
    const refusals = logLines(
      consumer.output(),
      'broker refused a reply over its max_message_size; such replies are answered with an error instead',
    ).length;
    assert.ok(
      refusals >= 1 && refusals <= BIG.size,
      `the publish channel closed at most once per big reply (${refusals})`,
    );
    assert.equal(
      await client.messageCount(`${input}.dead`),
      BIG.size,
      'the inputs of the refused replies are dead-lettered',
    );
    assert.equal(await client.messageCount(input), 0, 'nothing else left');
    report(
      t,
      `max_message_size: N=${N} (2 over) lost=${missing.length} duplicated=${duplicated} (small ${dupOfSmall}) answered in ${answeredMs} ms, channel closes ${refusals}, RSS ${Math.round(rss)} MiB`,
    );
  } finally {
    await watcher.stop().catch(() => {});
    await client.deleteQueues(input, `${input}.dead`, replies);
    await client.close();
  }
});
