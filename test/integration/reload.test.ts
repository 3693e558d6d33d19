/**
 * A model changed without downtime: a versioned model folder (models/<name>/<version>/) gains a new
 * version mid-stream and the consumer is told to reload (SIGHUP, POST /reload). Two tiny ONNX models
 * that answer differently (x + 1000, x + 2000) show which one scored each input; the expected answers
 * come from onnxruntime-node run on the same model files.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type * as amqp from 'amqplib';
import * as ort from 'onnxruntime-node';
import { FLOAT, INT64, buildModel, encodeModel, floatTensor, node, valueInfo } from '../../scripts/onnx-writer.js';
import { TestClient, type ReceivedReply } from '../support/broker.js';
import { TestConsumers, type ConsumerProcess } from '../support/consumer-process.js';
import { freePort, get, scrape, scrapeUntil } from '../support/http.js';

/** y = Identity(x) + c: the constant says which model answered. */
function addModel(c: number): Uint8Array {
  return encodeModel(
    buildModel({
      name: 'add',
      nodes: [node('Identity', ['x'], ['xi']), node('Add', ['xi', 'c'], ['y'])],
      initializers: [floatTensor('c', [1, 2], [c, c])],
      inputs: [valueInfo('x', FLOAT, ['N', 2])],
      outputs: [valueInfo('y', FLOAT, ['N', 2])],
    }),
  );
}

/** Loads (N is symbolic, so no shape check at load), but no input of its declared shape [N,2] can be reshaped to [3]. */
function unrunnableModel(): Uint8Array {
  return encodeModel(
    buildModel({
      name: 'add',
      nodes: [node('Reshape', ['x', 'shape'], ['y'])],
      initializers: [{ name: 'shape', dims: [1], dataType: INT64, int64Data: [3] }],
      inputs: [valueInfo('x', FLOAT, ['N', 2])],
      outputs: [valueInfo('y', FLOAT, [3])],
    }),
  );
}

const MODELS: Record<string, Uint8Array> = {
  'add/1': addModel(1000),
  'add/2': addModel(2000),
  'add/4': addModel(4000),
};
const root = mkdtempSync(join(tmpdir(), 'reload-'));
const modelDir = join(root, 'add');

/** As an operator should: written under a name that is not a version (ignored), then renamed in one step. */
function putVersion(version: string, bytes: Uint8Array): void {
  const staging = join(modelDir, `.incoming-${version}`);
  mkdirSync(staging, { recursive: true });
  writeFileSync(join(staging, 'add.onnx'), bytes);
  renameSync(staging, join(modelDir, version));
}

const inputOf = (i: number): number[][] => [[i, -i]];

/** What onnxruntime-node itself answers for each input on the model `version`. */
async function expected(version: string, inputs: number[]): Promise<Map<number, unknown>> {
  const session = await ort.InferenceSession.create(MODELS[version]);
  const out = await session.run({
    x: new ort.Tensor('float32', Float32Array.from(inputs.flatMap((i) => inputOf(i)[0])), [inputs.length, 2]),
  });
  const y = out.y.data as Float32Array;
  await session.release();
  return new Map(inputs.map((i, k) => [i, [[y[2 * k], y[2 * k + 1]]]]));
}

/** Every reply on `queue`, by correlation id, as it comes. */
async function collectAll(
  client: TestClient,
  queue: string,
): Promise<{ got: Map<string, ReceivedReply>; stop(): Promise<void> }> {
  const ch: amqp.Channel = await client.connection.createChannel();
  const got = new Map<string, ReceivedReply>();
  const { consumerTag } = await ch.consume(
    queue,
    (m) => {
      if (!m) return;
      const body = m.content.toString();
      got.set(m.properties.correlationId, {
        correlationId: m.properties.correlationId,
        status: m.properties.headers?.['x-status'],
        headers: m.properties.headers ?? {},
        body,
        content: m.content,
        contentType: m.properties.contentType,
        json: () => JSON.parse(body),
      });
    },
    { noAck: true },
  );
  return { got, stop: async () => void (await ch.cancel(consumerTag), await ch.close()) };
}

async function until(what: string, done: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const consumers = new TestConsumers();
const q = consumers.queuesFor('reload');
let client: TestClient;
let port: number;
let consumer: ConsumerProcess;
let next = 0;

/** Publishes `n` fresh inputs (ids r-<i>) and waits until each is answered; their indexes. */
async function ask(n: number): Promise<{ ids: number[]; replies: Map<string, ReceivedReply> }> {
  const ids = Array.from({ length: n }, () => next++);
  const replies = await client.ask(
    q.input,
    q.replies,
    ids.map((i) => ({ id: `r-${i}`, body: { data: inputOf(i) } })),
  );
  return { ids, replies };
}

before(async () => {
  mkdirSync(join(modelDir, 'latest'), { recursive: true });
  putVersion('1', MODELS['add/1']);
  client = await TestClient.connect();
  port = await freePort();
  consumer = consumers.startOn(q, { MODEL_DIR: modelDir, HTTP_PORT: String(port), CONCURRENCY: '2' });
  await consumers.allConsuming();
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client.close();
  rmSync(root, { recursive: true, force: true });
});

test('the versioned layout serves the highest version; a folder whose name is not a number is ignored with a log line', async () => {
  assert.match(consumer.output(), /"folder":"latest".*model version folder ignored: its name is not a number/);
  const { ids, replies } = await ask(3);
  const want = await expected('add/1', ids);
  for (const i of ids) {
    const r = replies.get(`r-${i}`)!;
    assert.equal(r.headers['x-model-version'], 'add/1');
    assert.deepEqual(r.json(), want.get(i));
  }
  const m = await scrape(port);
  assert.equal(m.get('scorer_model_info{model="add",version="add/1"}'), 1);
});

test('SIGHUP mid-stream switches to the new version: every reply is A or B as its x-model-version says, none an error, none missing, and every input sent after the switch is answered by B', async () => {
  const { got, stop } = await collectAll(client, q.replies);
  const sent: number[] = [];
  const afterSwitch: number[] = [];
  let signalled = false;
  const switched = () => consumer.output().includes('"msg":"model switched"');
  const deadline = Date.now() + 90_000;
  // About 200 inputs a second, before, during and after the reload; 200 more once the switch is logged.
  for (let extra = 0; extra < 200 && Date.now() < deadline; ) {
    const wasSwitched = switched();
    const chunk = Array.from({ length: 10 }, () => next++);
    await client.publishMany(
      q.input,
      chunk.map((i) => ({ body: { data: inputOf(i) }, options: { correlationId: `r-${i}` } })),
    );
    sent.push(...chunk);
    if (wasSwitched) {
      afterSwitch.push(...chunk);
      extra += chunk.length;
    }
    if (!signalled && sent.length >= 100) {
      putVersion('2', MODELS['add/2']);
      consumer.child.kill('SIGHUP');
      signalled = true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(afterSwitch.length >= 200, 'the switch happened while inputs were being sent');
  await until('a reply to every input', () => sent.every((i) => got.has(`r-${i}`)));
  await stop();

  const want = { 'add/1': await expected('add/1', sent), 'add/2': await expected('add/2', sent) };
  const byVersion = { 'add/1': 0, 'add/2': 0 };
  for (const i of sent) {
    const r = got.get(`r-${i}`)!;
    assert.equal(r.status, 'ok', `input ${i} answered with an error: ${r.body}`);
    const version = r.headers['x-model-version'] as keyof typeof want;
    assert.ok(version === 'add/1' || version === 'add/2', `input ${i}: x-model-version ${String(version)}`);
    assert.deepEqual(r.json(), want[version].get(i), `input ${i}: the answer is the one ${version} gives`);
    byVersion[version]++;
  }
  assert.equal(got.size, sent.length, 'one reply per input, none twice');
  assert.ok(byVersion['add/1'] >= 100, 'inputs before the reload were answered by A');
  for (const i of afterSwitch)
    assert.equal(
      got.get(`r-${i}`)!.headers['x-model-version'],
      'add/2',
      `input ${i}, sent after the switch, answered by B`,
    );
  await consumer.waitFor('old model retired: its batches were scored');
  const m = await scrapeUntil(port, (s) => s.get('scorer_model_info{model="add",version="add/2"}') === 1);
  assert.equal(m.get('scorer_model_info{model="add",version="add/2"}'), 1);
  assert.equal(
    m.get('scorer_model_info{model="add",version="add/1"}'),
    undefined,
    'the old version is no longer shown',
  );
  assert.equal(m.get('scorer_reloads_total'), 1);
});

test('a broken new model (a corrupt .onnx) leaves the old one serving: POST /reload answers 422 with the reason, a log line, the failure metric, /readyz stays 200', async () => {
  putVersion('3', Buffer.from('this is not an ONNX model'));
  const res = await fetch(`http://127.0.0.1:${port}/reload`, { method: 'POST' });
  assert.equal(res.status, 422);
  const body = (await res.json()) as { ok: boolean; serving: { version: string }; reason: string };
  assert.equal(body.ok, false);
  assert.equal(body.serving.version, 'add/2');
  assert.match(body.reason, /add\.onnx|protobuf|model/i);
  await consumer.waitFor('model reload failed; the old model serves on');
  const line = consumer
    .output()
    .split('\n')
    .find((l) => l.includes('model reload failed'))!;
  assert.match(line, /"reason":"[^"]+"/);
  assert.equal((await get(port, '/readyz')).status, 200);
  const m = await scrape(port);
  assert.equal(m.get('scorer_reload_failures_total'), 1);
  assert.equal(m.get('scorer_model_info{model="add",version="add/2"}'), 1);
  const { ids, replies } = await ask(5);
  const want = await expected('add/2', ids);
  for (const i of ids) {
    const r = replies.get(`r-${i}`)!;
    assert.equal(r.headers['x-model-version'], 'add/2');
    assert.deepEqual(r.json(), want.get(i));
  }
  rmSync(join(modelDir, '3'), { recursive: true });
});

test('a new model that loads but cannot answer an input of its own input shape is caught before the switch: 422, the old one serves on', async () => {
  putVersion('3', unrunnableModel());
  const res = await fetch(`http://127.0.0.1:${port}/reload`, { method: 'POST' });
  assert.equal(res.status, 422);
  const body = (await res.json()) as { reason: string; serving: { version: string } };
  assert.match(body.reason, /could not answer a generated input of its input shape: .*reshape/i);
  assert.equal(body.serving.version, 'add/2');
  const { replies } = await ask(1);
  assert.equal([...replies.values()][0].headers['x-model-version'], 'add/2');
  assert.equal((await scrape(port)).get('scorer_reload_failures_total'), 2);
  rmSync(join(modelDir, '3'), { recursive: true });
});

test('POST /reload switches to the new highest version and answers 200 with both versions', async () => {
  putVersion('4', MODELS['add/4']);
  const res = await fetch(`http://127.0.0.1:${port}/reload`, { method: 'POST' });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { ok: boolean; from: { version: string }; to: { version: string } };
  assert.deepEqual([body.ok, body.from.version, body.to.version], [true, 'add/2', 'add/4']);
  const { ids, replies } = await ask(5);
  const want = await expected('add/4', ids);
  for (const i of ids) {
    const r = replies.get(`r-${i}`)!;
    assert.equal(r.headers['x-model-version'], 'add/4');
    assert.deepEqual(r.json(), want.get(i));
  }
  assert.equal((await get(port, '/reload')).status, 405, 'GET does not reload');
  const m = await scrape(port);
  assert.equal(m.get('scorer_reloads_total'), 2);
  assert.equal(m.get('scorer_model_info{model="add",version="add/4"}'), 1);
});

test('a flat model folder is versioned by its model file: x-model-version is the first 12 hex digits of its SHA-256', async () => {
  const flat = join(root, 'flat');
  mkdirSync(flat);
  writeFileSync(join(flat, 'add.onnx'), MODELS['add/1']);
  const fq = consumers.queuesFor('reload.flat');
  const c = consumers.startOn(fq, { MODEL_DIR: flat });
  await c.waitFor('"msg":"consuming"');
  const replies = await client.ask(fq.input, fq.replies, [{ id: 'f-1', body: { data: inputOf(1) } }]);
  assert.equal(
    replies.get('f-1')!.headers['x-model-version'],
    createHash('sha256').update(MODELS['add/1']).digest('hex').slice(0, 12),
  );
});

test('with MODEL_WATCH_MS set, a new version folder is picked up on its own once the folder is quiet', async () => {
  const watched = join(root, 'watched');
  mkdirSync(join(watched, '1'), { recursive: true });
  writeFileSync(join(watched, '1', 'add.onnx'), MODELS['add/1']);
  const wq = consumers.queuesFor('reload.watch');
  const c = consumers.startOn(wq, { MODEL_DIR: watched, MODEL_WATCH_MS: '300' });
  await c.waitFor('"msg":"consuming"');
  mkdirSync(join(watched, '.incoming'));
  writeFileSync(join(watched, '.incoming', 'add.onnx'), MODELS['add/2']);
  renameSync(join(watched, '.incoming'), join(watched, '2'));
  await c.waitFor('"msg":"model switched"');
  assert.match(c.output(), /"trigger":"file changed: [^"]*".*"to":"watched\/2"/);
  const replies = await client.ask(wq.input, wq.replies, [{ id: 'w-1', body: { data: inputOf(1) } }]);
  const r = replies.get('w-1')!;
  assert.equal(r.headers['x-model-version'], 'watched/2');
  assert.deepEqual(r.json(), (await expected('add/2', [1])).get(1));
});

/** A user's entry script whose run() waits until the test writes `release` into the model folder. */
const HELD_SCRIPT = `
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
let answer = '';
export function init() { answer = readFileSync(join(process.env.MODEL_DIR!, 'answer.txt'), 'utf8'); }
export async function run(data: string) {
  const dir = process.env.MODEL_DIR!;
  writeFileSync(join(dir, 'started'), '');
  for (let i = 0; i < 3000 && answer === 'A' && !existsSync(join(dir, 'release')); i++) await new Promise((r) => setTimeout(r, 20));
  return { answer, data: JSON.parse(data) };
}
`;

test('a batch still in the old isolates is answered there with the old version, no later batch waits for it, and the old isolates are retired only after it', async () => {
  const held = join(root, 'held');
  for (const [v, answer] of [
    ['1', 'A'],
    ['2', 'B'],
  ] as const) {
    mkdirSync(join(held, `.${v}`), { recursive: true });
    writeFileSync(join(held, `.${v}`, 'answer.txt'), answer);
  }
  renameSync(join(held, '.1'), join(held, '1'));
  const script = join(root, 'held-script.ts');
  writeFileSync(script, HELD_SCRIPT);
  const hq = consumers.queuesFor('reload.held');
  const hport = await freePort();
  const c = consumers.startOn(hq, {
    MODEL_DIR: held,
    ENTRY_SCRIPT: script,
    CONCURRENCY: '2',
    RUN_TIMEOUT_MS: '120000',
    HTTP_PORT: String(hport),
  });
  await c.waitFor('"msg":"consuming"');
  const { got, stop } = await collectAll(client, hq.replies);
  try {
    await client.publish(hq.input, { data: 'first' }, { correlationId: 'held-A' });
    await until('the first input to be in run()', () => existsSync(join(held, '1', 'started')));
    renameSync(join(held, '.2'), join(held, '2'));
    const res = await fetch(`http://127.0.0.1:${hport}/reload`, { method: 'POST' });
    assert.equal(res.status, 200, 'the switch does not wait for the batch in the old isolate');
    await client.publish(hq.input, { data: 'second' }, { correlationId: 'after-B' });
    await until('the reply to the input sent after the switch', () => got.has('after-B'));
    assert.equal(got.get('after-B')!.headers['x-model-version'], 'held/2');
    assert.deepEqual(got.get('after-B')!.json(), { answer: 'B', data: 'second' });
    assert.equal(got.has('held-A'), false, 'the first input is still being scored by the old model');
    assert.doesNotMatch(c.output(), /old model retired/, 'the old isolates are kept while they hold a batch');
    writeFileSync(join(held, '1', 'release'), '');
    await until('the reply to the held input', () => got.has('held-A'));
    assert.equal(got.get('held-A')!.headers['x-model-version'], 'held/1', 'the reply names the version that scored it');
    assert.deepEqual(got.get('held-A')!.json(), { answer: 'A', data: 'first' });
    await c.waitFor('old model retired: its batches were scored');
  } finally {
    writeFileSync(join(held, '1', 'release'), '');
    await stop();
  }
});
