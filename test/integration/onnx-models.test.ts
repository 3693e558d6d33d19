/**
 * The built-in ONNX script through the real broker, on models made here (test/support/onnx-models.ts):
 * batching never changes an answer, scikit-learn ZipMap exports, every element type, OUTPUTS. Every
 * answer is compared with onnxruntime-node run directly on the same input.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { bootFailure, consumersOfFile } from '../support/consumer-process.js';
import { freePort, scrape } from '../support/http.js';
import {
  modelDir,
  numbers,
  orientation,
  plainClassifier,
  seqFirstRnn,
  twoOutputs,
  zipMapClassifier,
} from '../support/onnx-models.js';

const file = consumersOfFile();
const { consumers } = file;

function nested(flat: number[], dims: number[]): unknown {
  if (dims.length === 0) return flat[0];
  const size = flat.length / dims[0];
  return Array.from({ length: dims[0] }, (_, k) => nested(flat.slice(k * size, (k + 1) * size), dims.slice(1)));
}

async function ortAlone(
  bytes: Uint8Array,
  name: string,
  dims: number[],
  flat: number[],
): Promise<Record<string, unknown>> {
  const session = await ort.InferenceSession.create(bytes);
  const out = await session.run({ [name]: new ort.Tensor('float32', Float32Array.from(flat), dims) });
  await session.release();
  return Object.fromEntries(
    Object.entries(out).map(([k, t]) => [k, nested([...(t.data as Float32Array)], [...t.dims])]),
  );
}

test('a burst of 16 same-size images of alternating orientation: each answer equals onnxruntime-node alone, and batches still form', async () => {
  const bytes = orientation();
  const q = consumers.queuesFor('onnx.orientation');
  const port = await freePort();
  const c = consumers.startOn(q, {
    MODEL_DIR: modelDir('orientation', bytes),
    MAX_BATCH_DELAY_MS: '300',
    BATCH_DELAY_MIN_LOAD: '0',
    CONCURRENCY: '1',
    HTTP_PORT: String(port),
  });
  await c.waitFor('"msg":"consuming"');
  assert.match(c.output(), /"msg":"batching on"/);
  const items = Array.from({ length: 16 }, (_, k) => {
    const dims = k % 2 === 0 ? [1, 3, 24, 6] : [1, 3, 6, 24];
    return { id: `img-${k}`, dims, flat: numbers(432, 50 + k) };
  });
  const replies = await file.client.ask(
    q.input,
    q.replies,
    items.map((it) => ({ id: it.id, body: { data: nested(it.flat, it.dims) } })),
  );
  for (const it of items) {
    const r = replies.get(it.id);
    assert.equal(r?.status, 'ok', r?.body);
    assert.deepEqual(r.json(), (await ortAlone(bytes, 'x', it.dims, it.flat)).y, it.id);
  }
  const m = await scrape(port);
  assert.ok(
    m.get('scorer_batch_size_sum')! > m.get('scorer_batch_size_count')!,
    'some batch held more than one message',
  );
});

test('a sequence-first RNN: messages sent together are answered as if alone; the boot line says batching is off, why, and how to override', async () => {
  const bytes = seqFirstRnn();
  const q = consumers.queuesFor('onnx.rnn');
  const c = consumers.startOn(q, {
    MODEL_DIR: modelDir('rnn', bytes),
    MAX_BATCH_DELAY_MS: '300',
    BATCH_DELAY_MIN_LOAD: '0',
    CONCURRENCY: '1',
  });
  await c.waitFor('"msg":"consuming"');
  const line = c
    .output()
    .split('\n')
    .find((l) => l.includes('"msg":"batching off"'));
  assert.ok(line, 'a boot line says batching is off');
  const fields = JSON.parse(line) as { reason: string; override: string };
  assert.match(fields.reason, /axis 0/);
  assert.match(fields.override, /BATCHING=on/);
  const items = Array.from({ length: 6 }, (_, k) => ({
    id: `seq-${k}`,
    dims: [2 + (k % 2), 1, 3],
    flat: numbers(3 * (2 + (k % 2)), 70 + k),
  }));
  const replies = await file.client.ask(
    q.input,
    q.replies,
    items.map((it) => ({ id: it.id, body: { data: nested(it.flat, it.dims) } })),
  );
  for (const it of items) {
    const r = replies.get(it.id);
    assert.equal(r?.status, 'ok', r?.body);
    assert.deepEqual(r.json(), await ortAlone(bytes, 'x', it.dims, it.flat), it.id);
  }
});

test('a skl2onnx classifier ending in ZipMap (string labels) boots and answers labels and {label: probability} lists as the model computes them', async () => {
  const names = ['setosa', 'versicolor', 'virginica'];
  const q = consumers.queuesFor('onnx.zipmap');
  const c = consumers.startOn(q, { MODEL_DIR: modelDir('zipmap', zipMapClassifier(names)), CONCURRENCY: '1' });
  await c.waitFor('"msg":"consuming"');
  const row = numbers(4, 5).map((v) => Math.fround(v * 4));
  const replies = await file.client.ask(q.input, q.replies, [{ id: 'z', body: { data: [row] } }]);
  const r = replies.get('z');
  assert.equal(r?.status, 'ok', r?.body);
  const want = await ortAlone(plainClassifier([0, 1, 2]), 'float_input', [1, 4], row);
  const p = (want.probabilities as number[][])[0];
  const label = names[p.indexOf(Math.max(...p))];
  assert.deepEqual(r.json(), {
    label: [label],
    output_probability: [{ setosa: p[0], versicolor: p[1], virginica: p[2] }],
  });
});

test('OUTPUTS fetches only those outputs; an unknown name stops boot with one line', async () => {
  const dir = modelDir('two', twoOutputs());
  const q = consumers.queuesFor('onnx.outputs');
  const c = consumers.startOn(q, { MODEL_DIR: dir, OUTPUTS: 'small', CONCURRENCY: '1' });
  await c.waitFor('"msg":"consuming"');
  const replies = await file.client.ask(q.input, q.replies, [{ id: 'o', body: { data: [[1, -2, 3, -4]] } }]);
  assert.deepEqual(replies.get('o')?.json(), [[1, 0, 3, 0]]);
  const bad = consumers.startOn(q, { MODEL_DIR: dir, OUTPUTS: 'small,probs', CONCURRENCY: '1' });
  assert.match(
    await bootFailure(bad),
    /^scorer: boot failed: .*config OUTPUTS: the model has no output 'probs'; its outputs are 'small', 'big'$/,
  );
});
