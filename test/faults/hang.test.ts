import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { WatchedRun, idsOf, numbered, report } from '../support/faults.js';

const RUN_TIMEOUT_MS = 1000;

// A user's entry script that hangs on two inputs: awaiting a promise that never settles, and a synchronous loop.
const RUN = `
export const modelName = 'hang-test';
export function init() {}
export async function run(data: string) {
  const value = JSON.parse(data);
  if (value === 'hang-promise') await new Promise(() => {});
  if (value === 'hang-loop') while (true) {}
  return { echo: value };
}
`;
const RUN_BATCH = `${RUN}
export async function runBatch(items: string[]) {
  return Promise.all(items.map((item) => run(item)));
}
`;

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'scorer-hang-'));
  writeFileSync(join(dir, 'run.ts'), RUN);
  writeFileSync(join(dir, 'run-batch.ts'), RUN_BATCH);
});

after(() => rmSync(dir, { recursive: true, force: true }));

for (const script of ['run.ts', 'run-batch.ts']) {
  const label = script === 'run.ts' ? 'run only' : 'with runBatch';
  test(`a run that hangs (a never-settling promise, a synchronous loop) gets a TIMEOUT error reply after RUN_TIMEOUT_MS, and every message around it is served (${label})`, {
    timeout: 60_000,
  }, async (t) => {
    const run = await WatchedRun.open('hang');
    t.after(() => run.close());
    const { client, input, watcher } = run;
    const consumer = run.start({ ENTRY_SCRIPT: join(dir, script), RUN_TIMEOUT_MS: String(RUN_TIMEOUT_MS) });
    await consumer.waitFor('"msg":"consuming"');

    const before = numbered('before', 40, (i) => ({ data: i }));
    const afterwards = numbered('after', 40, (i) => ({ data: 1000 + i }));
    const hangs = ['hang-promise', 'hang-loop'];
    const publishedAt = Date.now();
    await client.publishMany(input, [
      ...before.slice(0, 20),
      { body: { data: 'hang-promise' }, options: { correlationId: 'hang-promise' } },
      ...before.slice(20),
      { body: { data: 'hang-loop' }, options: { correlationId: 'hang-loop' } },
    ]);
    // Published while the isolates hang.
    await new Promise((r) => setTimeout(r, 300));
    await client.publishMany(input, afterwards);

    const ids = [...idsOf(before), ...idsOf(afterwards), ...hangs];
    assert.ok(await watcher.waitAll(ids, 30_000), `every message answered (${watcher.answered(ids)} of ${ids.length})`);
    for (const id of [...idsOf(before), ...idsOf(afterwards)])
      assert.equal(watcher.of(id)[0].status, 'ok', `${id} answered ok`);

    const latencies: string[] = [];
    for (const id of hangs) {
      const [reply, ...more] = watcher.of(id);
      assert.equal(more.length, 0, `${id} answered once`);
      assert.equal(reply.status, 'error');
      assert.equal(reply.errorCode, 'TIMEOUT');
      assert.match(JSON.parse(reply.body) as string, /RUN_TIMEOUT_MS \(1000 ms\)/);
      const ms = reply.at - publishedAt;
      latencies.push(`${id} ${ms} ms`);
      // How soon after the timeout it comes is a figure for the report, not a pass mark: the machine may be loaded.
      assert.ok(ms >= RUN_TIMEOUT_MS, `${id}: not before the timeout (${ms} ms)`);
    }
    assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
    assert.equal(await client.messageCount(input), 0, 'the input queue is empty');
    report(
      t,
      `hang (${label}, RUN_TIMEOUT_MS=${RUN_TIMEOUT_MS}): ${ids.length - hangs.length} others answered ok; timeout replies after publish: ${latencies.join(', ')}`,
    );
  });
}
