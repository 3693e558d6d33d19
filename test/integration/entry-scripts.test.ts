/**
 * CONTRACT §1: a user's own entry script, TypeScript from a folder outside the repository, named by
 * ENTRY_SCRIPT and run without a rebuild; with and without runBatch; the ported Azure ML example.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { TestClient, type ReceivedReply } from '../support/broker.js';
import { TestConsumers, type ConsumerQueues as Queues } from '../support/consumer-process.js';
import { freePort, scrape } from '../support/http.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'scorer-entry-scripts-'));

const SCRIPTS: Record<string, string> = {
  // No runBatch: the consumer calls run() once per message. Imports a helper module that sits next to it.
  'plain/score.ts': `
import { describe } from './describe.js';

export function init(): void {}

export function run(data: string): { type: string; text: string; described: string } {
  return { type: typeof data, text: data, described: describe(JSON.parse(data)) };
}
`,
  'plain/describe.ts': `
export function describe(value: unknown): string {
  return Array.isArray(value) ? \`an array of \${value.length}\` : typeof value;
}
`,
  // runBatch answers with the batch it saw; an item with "fail" is answered with an Error, an item with "boom" makes the whole call throw.
  'batched/score.ts': `
interface Item { n: number; fail?: boolean; boom?: boolean }
let batchThrows = 0;

export function init(): void {}

export function run(data: string) {
  const item = JSON.parse(data) as Item;
  return { via: 'run', n: item.n, batchThrows };
}

export function runBatch(items: string[]): unknown[] {
  const values = items.map((text) => JSON.parse(text) as Item);
  if (values.some((v) => v.boom)) {
    batchThrows++;
    throw new Error('runBatch exploded');
  }
  const batch = values.map((v) => v.n);
  return values.map((v) => (v.fail ? new Error(\`item \${v.n} refused\`) : { via: 'runBatch', n: v.n, batch }));
}
`,
  // What reaches the script about the model folder: the environment and the init context.
  'env/score.ts': `
let context: { modelDir?: string } = {};

export function init(ctx: { modelDir: string }): void {
  context = ctx;
}

export function run(): Record<string, string | undefined> {
  return { AZUREML_MODEL_DIR: process.env.AZUREML_MODEL_DIR, MODEL_DIR: process.env.MODEL_DIR, contextModelDir: context.modelDir };
}
`,
};

let client: TestClient;
const consumers = new TestConsumers();
let plain: Queues;
/** The plain script again with RUN_GROUP_MS=0; both with /metrics on these ports. */
let oneACall: Queues;
const ports = { plain: 0, oneACall: 0 };
let batched: Queues;
let iris: Queues;
let withModelDir: Queues;
let withAzureDir: Queues;
let outside: Queues;

/** A consumer of its own queues; all start together in before(). */
function consumer(name: string, env: Record<string, string>): Queues {
  const q = consumers.queuesFor(`scripts.${name}`);
  consumers.startOn(q, { CONCURRENCY: '1', ...env });
  return q;
}

/** Publishes every item at once (so they can share a batch) and returns the one reply per id. */
async function ask(q: Queues, items: Array<{ id: string; data: unknown }>): Promise<Map<string, ReceivedReply>> {
  return client.ask(
    q.input,
    q.replies,
    items.map(({ id, data }) => ({ id, body: { data } })),
    20_000,
  );
}

const okBody = (r: ReceivedReply | undefined): unknown => {
  assert.ok(r, 'a reply');
  assert.equal(r.status, 'ok', r.body);
  return r.json();
};

before(async () => {
  for (const [file, source] of Object.entries(SCRIPTS)) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), source);
  }
  mkdirSync(join(dir, 'model-a'));
  mkdirSync(join(dir, 'model-b'));
  client = await TestClient.connect();
  ports.plain = await freePort();
  ports.oneACall = await freePort();
  // RUN_GROUP_MS well above a call's round trip even on a loaded machine: the burst test below counts groups.
  plain = consumer('plain', {
    ENTRY_SCRIPT: join(dir, 'plain/score.ts'),
    RUN_GROUP_MS: '50',
    HTTP_PORT: String(ports.plain),
  });
  oneACall = consumer('one-a-call', {
    ENTRY_SCRIPT: join(dir, 'plain/score.ts'),
    RUN_GROUP_MS: '0',
    HTTP_PORT: String(ports.oneACall),
  });
  batched = consumer('batched', {
    ENTRY_SCRIPT: join(dir, 'batched/score.ts'),
    MAX_BATCH_SIZE: '32',
    // Long enough that a burst published at once is one batch even on a loaded CI machine: at 300 ms one of six
    // inputs once came after its batch had gone (a CI run on 2026-12-06), and was run() alone.
    MAX_BATCH_DELAY_MS: '1000',
    BATCH_DELAY_MIN_LOAD: '0',
  });
  iris = consumer('iris', { ENTRY_SCRIPT: 'models/score.ts' });
  // Relative to the consumer's working directory (the repository root), as a user may write it.
  withModelDir = consumer('model-dir', {
    ENTRY_SCRIPT: join(dir, 'env/score.ts'),
    MODEL_DIR: relative(ROOT, join(dir, 'model-a')),
  });
  // A copy of the example far from this project's node_modules: its `import 'onnxruntime-node'` must still resolve.
  mkdirSync(join(dir, 'outside'));
  copyFileSync(join(ROOT, 'models/score.ts'), join(dir, 'outside/score.ts'));
  outside = consumer('outside', { ENTRY_SCRIPT: join(dir, 'outside/score.ts') });
  withAzureDir = consumer('azure-dir', {
    ENTRY_SCRIPT: join(dir, 'env/score.ts'),
    AZUREML_MODEL_DIR: join(dir, 'model-b'),
  });
  await consumers.allConsuming();
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a TypeScript entry script from outside the repository gets the data value as JSON text, and its result is the reply body', async () => {
  const replies = await ask(plain, [
    {
      id: 'rows',
      data: [
        [1, 2],
        [3, 4],
      ],
    },
    { id: 'object', data: { a: 'ü', b: null } },
    { id: 'null', data: null },
  ]);
  assert.deepEqual(okBody(replies.get('rows')), { type: 'string', text: '[[1,2],[3,4]]', described: 'an array of 2' });
  assert.deepEqual(okBody(replies.get('object')), { type: 'string', text: '{"a":"ü","b":null}', described: 'object' });
  assert.deepEqual(okBody(replies.get('null')), { type: 'string', text: 'null', described: 'object' });
  assert.equal(replies.get('rows')!.headers['x-model'], 'entry-script');
});

test('an entry script can import a local helper module next to it', async () => {
  const replies = await ask(plain, [{ id: 'helper', data: [1, 2, 3] }]);
  assert.equal((okBody(replies.get('helper')) as { described: string }).described, 'an array of 3');
});

test('without runBatch, every one of many messages is answered by run()', async () => {
  const items = Array.from({ length: 40 }, (_, i) => ({ id: `plain-${i}`, data: [i] }));
  const replies = await ask(plain, items);
  for (const { id, data } of items)
    assert.equal((okBody(replies.get(id)) as { text: string }).text, JSON.stringify(data));
});

test('without runBatch, a burst reaches the script several messages to a batch (RUN_GROUP_MS), each answered by its own run(); at RUN_GROUP_MS=0 one message a batch', async () => {
  const meanBatch = async (port: number) => {
    const m = await scrape(port);
    return (m.get('scorer_batch_size_sum') ?? 0) / (m.get('scorer_batch_size_count') ?? 1);
  };
  for (const [q, port] of [
    [plain, ports.plain],
    [oneACall, ports.oneACall],
  ] as const) {
    const items = Array.from({ length: 300 }, (_, i) => ({ id: `burst-${port}-${i}`, data: [i] }));
    const replies = await ask(q, items);
    for (const { id, data } of items)
      assert.equal((okBody(replies.get(id)) as { text: string }).text, JSON.stringify(data), id);
  }
  const grouped = await meanBatch(ports.plain);
  assert.ok(grouped > 1, `RUN_GROUP_MS=50: the mean batch is ${grouped}`);
  assert.equal(await meanBatch(ports.oneACall), 1, 'RUN_GROUP_MS=0: every batch one message');
});

test('with runBatch, several messages reach the script in one call, each answered with its own result', async () => {
  const items = Array.from({ length: 12 }, (_, i) => ({ id: `batch-${i}`, data: { n: i } }));
  const replies = await ask(batched, items);
  const bodies = items.map(({ id }) => okBody(replies.get(id)) as { via: string; n: number; batch?: number[] });
  bodies.forEach((b, i) => {
    assert.equal(b.n, i, 'each reply carries its own item');
    // A batch of one is scored with run(); every other batch goes to runBatch whole.
    if (b.via === 'runBatch') assert.ok(b.batch?.includes(i));
  });
  const largest = Math.max(...bodies.map((b) => b.batch?.length ?? 1));
  assert.ok(largest > 1, `runBatch saw batches of at most ${largest}`);
});

test('an item that runBatch returns as an Error gets its own error reply, while its neighbours in the batch succeed', async () => {
  // Which items share a batch depends on how their deliveries arrive: a round in which the failing item came
  // alone (scored by run(), which does not refuse it) shows nothing about runBatch, and another round is sent.
  for (let round = 0; round < 5; round++) {
    const items = Array.from({ length: 6 }, (_, i) => ({
      id: `mixed-${round}-${i}`,
      data: i === 3 ? { n: i, fail: true } : { n: i },
    }));
    const replies = await ask(batched, items);
    // Every neighbour succeeds, through runBatch or, alone in a batch, through run().
    const neighbours = items
      .filter((_, i) => i !== 3)
      .map(({ id }) => okBody(replies.get(id)) as { via: string; batch?: number[] });
    const shared = neighbours.filter((b) => b.batch?.includes(3));
    if (shared.length === 0) continue;
    assert.ok(
      shared.every((b) => b.via === 'runBatch'),
      `the neighbours that shared the failing item's batch came through runBatch: ${JSON.stringify(neighbours)}`,
    );
    const failed = replies.get(`mixed-${round}-3`)!;
    assert.equal(failed.status, 'error');
    assert.equal(failed.headers['x-error-code'], 'RUN_FAILED');
    assert.equal(failed.json(), 'item 3 refused');
    return;
  }
  assert.fail('in five rounds the failing item never shared a batch with a neighbour');
});

test('a runBatch that throws falls back to run() for each item of the batch', async () => {
  const items = Array.from({ length: 5 }, (_, i) => ({
    id: `boom-${i}`,
    data: i === 2 ? { n: i, boom: true } : { n: i },
  }));
  const replies = await ask(batched, items);
  const bodies = items.map(({ id }) => okBody(replies.get(id)) as { via: string; n: number; batchThrows: number });
  // Items batched with the one that blew up are answered by run(); any that came alone or in another batch went the normal way.
  const viaRun = bodies.filter((b) => b.via === 'run');
  assert.ok(
    viaRun.some((b) => b.n === 2),
    'the item that made runBatch throw is answered by run()',
  );
  assert.ok(viaRun.length > 1, 'its batch neighbours are answered by run() too');
  assert.ok(
    viaRun.every((b) => b.batchThrows >= 1),
    'run() was the fallback after runBatch threw',
  );
  for (const [i, b] of bodies.entries()) assert.equal(b.n, i);
});

test('the ported Azure ML example (models/score.ts) answers iris rows through the broker', async () => {
  const replies = await ask(iris, [
    {
      id: 'three-rows',
      data: [
        [5.1, 3.5, 1.4, 0.2],
        [7.0, 3.2, 4.7, 1.4],
        [6.3, 3.3, 6.0, 2.5],
      ],
    },
    { id: 'one-row', data: [[5.0, 3.4, 1.5, 0.2]] },
    { id: 'short-row', data: [[5.1, 3.5, 1.4]] },
  ]);
  const three = okBody(replies.get('three-rows')) as { label: number[]; probabilities: number[][]; classes: string[] };
  assert.deepEqual(three.label, [0, 1, 2]);
  assert.deepEqual(three.classes, ['setosa', 'versicolor', 'virginica']);
  assert.equal(three.probabilities.length, 3);
  for (const p of three.probabilities) {
    assert.equal(p.length, 3);
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-5);
  }
  assert.deepEqual((okBody(replies.get('one-row')) as { classes: string[] }).classes, ['setosa']);
  const short = replies.get('short-row')!;
  assert.equal(short.status, 'error');
  assert.match(short.json() as string, /^row 0 must be 4 numbers .*got \[5\.1,3\.5,1\.4\]$/);
});

test('a script outside the project can import onnxruntime-node, which the consumer ships', async () => {
  const replies = await ask(outside, [{ id: 'row', data: [[6.3, 3.3, 6.0, 2.5]] }]);
  assert.deepEqual((okBody(replies.get('row')) as { label: number[] }).label, [2]);
});

test('MODEL_DIR reaches the script as an absolute path in AZUREML_MODEL_DIR, MODEL_DIR and the init context', async () => {
  const replies = await ask(withModelDir, [{ id: 'env', data: null }]);
  const expected = join(dir, 'model-a');
  assert.deepEqual(okBody(replies.get('env')), {
    AZUREML_MODEL_DIR: expected,
    MODEL_DIR: expected,
    contextModelDir: expected,
  });
});

test('AZUREML_MODEL_DIR reaches the script the same way, so a ported Azure ML script runs unchanged', async () => {
  const replies = await ask(withAzureDir, [{ id: 'env', data: null }]);
  const expected = join(dir, 'model-b');
  assert.deepEqual(okBody(replies.get('env')), {
    AZUREML_MODEL_DIR: expected,
    MODEL_DIR: expected,
    contextModelDir: expected,
  });
});
