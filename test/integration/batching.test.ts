/**
 * Dynamic batching through the real broker: when a batch goes (MAX_BATCH_DELAY_MS, MAX_BATCH_SIZE, and
 * BATCH_DELAY_MIN_LOAD 0 where a test needs the delay's batches; an idle consumer does not wait by default),
 * what a bad item does to its batch, that every reply keeps its own input's correlation, and that a
 * redelivered input is scored alone. A recording entry script answers each item with the batch it
 * was scored in.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { topologyFor } from '../../src/broker/topology.js';
import { TestClient, tally, type ReceivedReply } from '../support/broker.js';
import { TestConsumers, type ConsumerQueues as Queues } from '../support/consumer-process.js';
import { freePort } from '../support/http.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-batching-'));
const RECORDER = join(dir, 'recorder.ts');

// Each item is answered with its own id and the ids of the batch it was scored in, in the order the script got them.
writeFileSync(
  RECORDER,
  `
export function init(): void {}

export function run(data: string) {
  const { id } = JSON.parse(data) as { id: number };
  return { id, via: 'run', batch: [id] };
}

export function runBatch(items: string[]) {
  const ids = items.map((text) => (JSON.parse(text) as { id: number }).id);
  return ids.map((id) => ({ id, via: 'runBatch', batch: ids }));
}
`,
);

interface Answer {
  id: number;
  via: 'run' | 'runBatch';
  batch: number[];
}

let client: TestClient;
const consumers = new TestConsumers();

function newQueues(name: string): Queues {
  return consumers.queuesFor(`batching.${name}`);
}

/** Publishes every item at once and returns the one reply per correlation id. */
async function ask(
  q: Queues,
  items: Array<{ id: string; body: object | Buffer; messageIdOnly?: boolean }>,
): Promise<Map<string, ReceivedReply>> {
  return client.ask(
    q.input,
    q.replies,
    items.map(({ id, body, messageIdOnly }) => ({ id, body, options: messageIdOnly ? { messageId: id } : undefined })),
    30_000,
  );
}

function answer(r: ReceivedReply | undefined): Answer {
  assert.ok(r, 'a reply');
  assert.equal(r.status, 'ok', r.body);
  return r.json() as Answer;
}

/** scorer_batch_size from the consumer's /metrics: how many batches, how many items in them. */
async function batchMetrics(port: number): Promise<{ batches: number; items: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { batches: value('scorer_batch_size_count'), items: value('scorer_batch_size_sum') };
}

let byDelay: Queues;
let bySize: Queues;
let iris: Queues;
let irisPort: number;
let correlation: Queues;
let idle: Queues;

before(async () => {
  client = await TestClient.connect();
  byDelay = newQueues('delay');
  consumers.startOn(byDelay, { ENTRY_SCRIPT: RECORDER, MAX_BATCH_DELAY_MS: '200', BATCH_DELAY_MIN_LOAD: '0' });
  bySize = newQueues('size');
  // A delay no test waits for: only a full batch can go.
  consumers.startOn(bySize, {
    ENTRY_SCRIPT: RECORDER,
    MAX_BATCH_SIZE: '4',
    MAX_BATCH_DELAY_MS: '60000',
    BATCH_DELAY_MIN_LOAD: '0',
  });
  iris = newQueues('iris');
  irisPort = await freePort();
  consumers.startOn(iris, { MAX_BATCH_DELAY_MS: '200', BATCH_DELAY_MIN_LOAD: '0', HTTP_PORT: String(irisPort) });
  correlation = newQueues('correlation');
  consumers.startOn(correlation, {
    ENTRY_SCRIPT: RECORDER,
    MAX_BATCH_SIZE: '16',
    MAX_BATCH_DELAY_MS: '2',
    BATCH_DELAY_MIN_LOAD: '0',
  });
  idle = newQueues('idle');
  // The default BATCH_DELAY_MIN_LOAD: an idle consumer does not wait for the delay, however long.
  consumers.startOn(idle, { ENTRY_SCRIPT: RECORDER, MAX_BATCH_DELAY_MS: '60000' });
  await consumers.allConsuming();
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a partial batch goes after MAX_BATCH_DELAY_MS: three messages published together are scored as one batch of three', async () => {
  const items = [0, 1, 2].map((i) => ({ id: `delay-${i}`, body: { data: { id: i } } }));
  const replies = await ask(byDelay, items);
  for (const { id } of items) {
    const a = answer(replies.get(id));
    assert.equal(a.via, 'runBatch');
    assert.deepEqual(a.batch, [0, 1, 2]);
  }
});

test('an idle consumer scores a message without waiting MAX_BATCH_DELAY_MS (BATCH_DELAY_MIN_LOAD)', async () => {
  // ask() gives up after 30 s, half the 60 s delay: a reply at all means the message did not wait for it.
  const replies = await ask(idle, [{ id: 'lone', body: { data: { id: 7 } } }]);
  assert.deepEqual(answer(replies.get('lone')).batch, [7]);
});

test('a batch goes as soon as it holds MAX_BATCH_SIZE messages, without waiting for the delay', async () => {
  const items = Array.from({ length: 8 }, (_, i) => ({ id: `size-${i}`, body: { data: { id: i } } }));
  const replies = await ask(bySize, items);
  const batches = new Set(items.map(({ id }) => JSON.stringify(answer(replies.get(id)).batch)));
  assert.deepEqual([...batches].sort(), ['[0,1,2,3]', '[4,5,6,7]']);
});

test('a bad item in a batch gets its own error reply while its neighbours in the same batch are scored (built-in ONNX model)', async () => {
  const before = await batchMetrics(irisPort);
  const items = [
    { id: 'setosa', body: { data: [[5.1, 3.5, 1.4, 0.2]] } },
    { id: 'short-row', body: { data: [[5.1, 3.5, 1.4]] } },
    { id: 'versicolor', body: { data: [[7.0, 3.2, 4.7, 1.4]] } },
    { id: 'not-json', body: Buffer.from('{"data": [[5.1, 3.5') },
    { id: 'a-string', body: { data: [['5.1', 3.5, 1.4, 0.2]] } },
    { id: 'virginica', body: { data: [[6.3, 3.3, 6.0, 2.5]] } },
  ];
  const replies = await ask(iris, items);
  const after = await batchMetrics(irisPort);
  assert.deepEqual(
    { batches: after.batches - before.batches, items: after.items - before.items },
    { batches: 1, items: items.length },
    'all six were scored as one batch',
  );

  const labels: Record<string, number> = { setosa: 0, versicolor: 1, virginica: 2 };
  for (const [id, label] of Object.entries(labels)) {
    const r = replies.get(id)!;
    assert.equal(r.status, 'ok', r.body);
    assert.deepEqual((r.json() as { label: number[] }).label, [label], `${id} keeps its own result`);
  }
  const errors: Record<string, [string, RegExp]> = {
    'short-row': ['SHAPE', /expects shape \[-1,4\], got \[1,3\]/],
    'not-json': ['BAD_JSON', /not JSON/],
    'a-string': ['TYPE', /expects float32 elements, got string at \[0\]\[0\]/],
  };
  for (const [id, [code, text]] of Object.entries(errors)) {
    const r = replies.get(id)!;
    assert.equal(r.status, 'error', `${id}: ${r.body}`);
    assert.equal(r.headers['x-error-code'], code);
    assert.match(r.json() as string, text);
  }
});

test('over many batches, every reply carries its own input correlation id and result, and a batch keeps its inputs in arrival order', async () => {
  const items = Array.from({ length: 300 }, (_, i) => ({
    id: `corr-${i}`,
    body: { data: { id: i } },
    messageIdOnly: i % 10 === 0,
  }));
  const replies = await ask(correlation, items);
  const sizes: number[] = [];
  for (const [i, { id }] of items.entries()) {
    const a = answer(replies.get(id));
    assert.equal(a.id, i, `the reply to ${id} answers ${id}`);
    assert.ok(a.batch.includes(i));
    assert.deepEqual(
      a.batch,
      [...a.batch].sort((x, y) => x - y),
      'a batch holds its inputs in the order they arrived',
    );
    assert.ok(a.batch.length <= 16, 'no batch over MAX_BATCH_SIZE');
    sizes.push(a.batch.length);
  }
  assert.ok(Math.max(...sizes) > 1, 'some inputs shared a batch');
});

test('a redelivered input is scored alone, while fresh inputs published with it still share a batch', async () => {
  const q = newQueues('redelivered');
  // Declared as the consumer will declare it, so its boot finds the queue it expects.
  const t = topologyFor({ ...loadConfig({}), inputQueue: q.input, replyQueue: q.replies });
  const ch = await client.connection.createChannel();
  await ch.assertQueue(q.input, { durable: true, arguments: t.inputArguments });
  // Another consumer takes five inputs and goes away without acking: the broker redelivers them.
  const first = [0, 1, 2, 3, 4].map((i) => ({ id: `again-${i}`, body: { data: { id: i } } }));
  await client.publishMany(
    q.input,
    first.map(({ id, body }) => ({ body, options: { correlationId: id } })),
  );
  await ch.prefetch(10);
  const taken = new Promise<void>((resolve) => {
    let n = 0;
    void ch.consume(q.input, () => ++n === first.length && resolve());
  });
  await taken;
  await ch.close();
  const fresh = [10, 11, 12].map((i) => ({ id: `fresh-${i}`, body: { data: { id: i } } }));
  await client.publishMany(
    q.input,
    fresh.map(({ id, body }) => ({ body, options: { correlationId: id } })),
  );

  const c = consumers.startOn(q, { ENTRY_SCRIPT: RECORDER, MAX_BATCH_DELAY_MS: '200', BATCH_DELAY_MIN_LOAD: '0' });
  await c.waitFor('"msg":"consuming"');
  const ids = [...first, ...fresh].map(({ id }) => id);
  const got = await client.collect(q.replies, (rs) => tally(ids, rs).missing.length === 0, 30_000);
  assert.deepEqual(tally(ids, got).missing, []);
  const replies = new Map(got.map((r) => [r.correlationId!, r]));
  for (const { id } of first) {
    const a = answer(replies.get(id));
    assert.deepEqual(a.batch, [a.id], `${id} was scored alone`);
  }
  for (const { id } of fresh) assert.deepEqual(answer(replies.get(id)).batch, [10, 11, 12], `${id} shared its batch`);
});
