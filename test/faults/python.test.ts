/**
 * The fault guarantees of hang.test.ts, poison.test.ts and sigterm.test.ts, for a Python entry script:
 * a run that hangs (in time.sleep, or in C code holding the GIL) is cut off at RUN_TIMEOUT_MS and the
 * rest served; a process that dies under one message leaves it to the delivery limit; SIGTERM with
 * messages in flight answers each of them once. Stdlib-only scripts, `python3` on PATH.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  WatchedRun,
  idsOf,
  logLines,
  numbered,
  report,
  restartUntilAnswered,
  stopMidStream,
} from '../support/faults.js';

const RUN_TIMEOUT_MS = 1000;

const SCRIPT = `
import json, os, re, time

model_name = 'python-faults'

def init():
    pass

def run(data):
    value = json.loads(data)
    if value == 'hang-sleep':
        time.sleep(3600)
    if value == 'hang-c':
        # Catastrophic backtracking: one call into the C regex engine that does not come back (nor release the GIL).
        re.match(r'(a+)+$', 'a' * 64 + 'b')
    if value == 'poison':
        os._exit(1)
    return {'echo': value}
`;

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'scorer-python-faults-'));
  writeFileSync(join(dir, 'score.py'), SCRIPT);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('a Python run that hangs (time.sleep, C code holding the GIL) gets a TIMEOUT reply after RUN_TIMEOUT_MS, and every message around it is served', {
  timeout: 90_000,
}, async (t) => {
  const run = await WatchedRun.open('python.hang');
  t.after(() => run.close());
  const { client, input, watcher } = run;
  const consumer = run.start({ ENTRY_SCRIPT: join(dir, 'score.py'), RUN_TIMEOUT_MS: String(RUN_TIMEOUT_MS) });
  await consumer.waitFor('"msg":"consuming"', 60_000);

  const before = numbered('before', 40, (i) => ({ data: i }));
  const afterwards = numbered('after', 40, (i) => ({ data: 1000 + i }));
  const hangs = ['hang-sleep', 'hang-c'];
  const publishedAt = Date.now();
  await client.publishMany(input, [
    ...before.slice(0, 20),
    { body: { data: 'hang-sleep' }, options: { correlationId: 'hang-sleep' } },
    ...before.slice(20),
    { body: { data: 'hang-c' }, options: { correlationId: 'hang-c' } },
  ]);
  await new Promise((r) => setTimeout(r, 300));
  await client.publishMany(input, afterwards);

  const ids = [...idsOf(before), ...idsOf(afterwards), ...hangs];
  assert.ok(await watcher.waitAll(ids, 60_000), `every message answered (${watcher.answered(ids)} of ${ids.length})`);
  for (const item of [...before, ...afterwards]) {
    const [reply] = watcher.of(item.options.correlationId!);
    assert.equal(reply.status, 'ok');
    assert.deepEqual(JSON.parse(reply.body), { echo: (item.body as { data: number }).data });
  }
  const latencies: string[] = [];
  for (const id of hangs) {
    const [reply, ...more] = watcher.of(id);
    assert.equal(more.length, 0, `${id} answered once`);
    assert.equal(reply.errorCode, 'TIMEOUT');
    assert.match(JSON.parse(reply.body) as string, /RUN_TIMEOUT_MS \(1000 ms\)/);
    const ms = reply.at - publishedAt;
    latencies.push(`${id} ${ms} ms`);
    assert.ok(ms >= RUN_TIMEOUT_MS, `${id}: not before the timeout (${ms} ms)`);
  }
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
  assert.equal(await client.messageCount(input), 0, 'the input queue is empty');
  report(
    t,
    `python hang (RUN_TIMEOUT_MS=${RUN_TIMEOUT_MS}): ${ids.length - hangs.length} others answered ok; timeout replies after publish: ${latencies.join(', ')}`,
  );
});

test("a message that kills the Python script's process (os._exit) is dead-lettered after the delivery limit, unanswered, while its neighbours are all answered", {
  timeout: 90_000,
}, async (t) => {
  const run = await WatchedRun.open('python.poison');
  t.after(() => run.close());
  const { client, input, watcher } = run;
  const dead = `${input}.dead`;
  const consumer = run.start({ DELIVERY_LIMIT: '2', ENTRY_SCRIPT: join(dir, 'score.py') });
  await consumer.waitFor('"msg":"consuming"', 60_000);

  const good = numbered('good', 200, (i) => ({ data: i }));
  await client.publishMany(input, [
    ...good.slice(0, 100),
    { body: { data: 'poison' }, options: { correlationId: 'poison' } },
    ...good.slice(100),
  ]);

  const ids = idsOf(good);
  assert.ok(
    await watcher.waitAll(ids, 60_000),
    `every good message answered (${watcher.answered(ids)} of ${ids.length})`,
  );
  for (const id of ids)
    assert.deepEqual(JSON.parse(watcher.of(id)[0].body), { echo: Number(id.slice('good-'.length)) });

  const deadline = Date.now() + 60_000;
  while ((await client.messageCount(dead)) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await client.messageCount(dead), 1, `the poison message is in ${dead}`);
  assert.equal(await client.messageCount(input), 0, 'the input queue is empty');
  const counts = logLines(consumer.output(), 'input requeued')
    .concat(logLines(consumer.output(), 'input dead-lettered'))
    .filter((l) => l.correlationId === 'poison')
    .map((l) => l.deliveryCount as number)
    .sort();
  assert.deepEqual(counts, [0, 1, 2], 'the Python process died on each of three deliveries');
  assert.equal(watcher.of('poison').length, 0, 'the poison message got no reply');
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
  report(t, `python poison: ${ids.length} good answered, poison dead-lettered after ${counts.length} deaths`);
});

test('SIGTERM with Python runs in flight finishes them and exits 0; a restart answers the rest: nothing lost, nothing answered twice', {
  timeout: 120_000,
}, async (t) => {
  const run = await WatchedRun.open('python.sigterm', { env: { ENTRY_SCRIPT: join(dir, 'score.py') } });
  t.after(() => run.close());
  const N = 3000;
  const items = numbered('term', N, (i) => ({ data: i }));
  const ids = idsOf(items);
  const stopped = await stopMidStream(run, items, 0.25, 'SIGTERM');
  assert.equal(stopped.exit, 0, 'a graceful stop exits 0');
  assert.match(stopped.consumer.output(), /"msg":"stopped"/);
  await restartUntilAnswered(run, ids, 60_000);
  const { missing, duplicated, duplicatedIds } = run.watcher.tally(ids);
  report(
    t,
    `python sigterm: N=${N}, answered before the stop=${stopped.answered}, lost=${missing.length}, duplicated=${duplicated}`,
  );
  assert.deepEqual(missing, [], 'no input without a reply');
  assert.equal(duplicated, 0, `no input answered twice (e.g. ${duplicatedIds.slice(0, 5).join(', ')})`);
  for (const id of ids)
    assert.deepEqual(JSON.parse(run.watcher.of(id)[0].body), { echo: Number(id.slice('term-'.length)) });
});
