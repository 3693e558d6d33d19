/**
 * The built-in ONNX script's batching, on models made here (test/support/onnx-models.ts): answers of
 * messages scored together equal onnxruntime-node's answer for each message alone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import * as entry from '../../src/onnx/entry.js';
import { groupByShape, shapeKey, stack } from '../../src/onnx/batching.js';
import { readNumericTensor } from '../../src/isolate/numeric-data.js';
import type { InitContext } from '../../src/isolate/entry-script.js';
import { mixesRows, modelDir, numbers, orientation, rowWise, seqFirstRnn } from '../support/onnx-models.js';
import { answersOf } from '../support/answers.js';

const context = (dir: string, batching: 'auto' | 'on' | 'off' = 'auto'): InitContext => ({
  modelDir: dir,
  maxTensorElements: 1_000_000,
  ort: { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false },
  onnx: { batching, outputs: [] },
});

/** A nested array of the given shape, filled from a seed. */
function tensor(dims: number[], seed: number): unknown {
  const flat = numbers(
    dims.reduce((a, b) => a * b, 1),
    seed,
  );
  const build = (level: number, at: number): unknown =>
    level === dims.length
      ? flat[at]
      : Array.from({ length: dims[level] }, (_, k) => build(level + 1, at * dims[level] + k));
  return build(0, 0);
}

/** onnxruntime-node alone on one message, outputs as nested arrays keyed by name. */
async function alone(
  bytes: Uint8Array,
  feeds: Record<string, { dims: number[]; value: unknown }>,
): Promise<Record<string, unknown>> {
  const session = await ort.InferenceSession.create(bytes);
  const tensors = Object.fromEntries(
    Object.entries(feeds).map(([k, f]) => [
      k,
      new ort.Tensor('float32', Float32Array.from((f.value as unknown[]).flat(10) as number[]), f.dims),
    ]),
  );
  const out = await session.run(tensors);
  await session.release();
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, nest([...(t.data as Float32Array)], [...t.dims])]));
}

function nest(flat: number[], dims: number[]): unknown {
  if (dims.length === 0) return flat[0];
  const size = flat.length / dims[0];
  return Array.from({ length: dims[0] }, (_, k) => nest(flat.slice(k * size, (k + 1) * size), dims.slice(1)));
}

test('shapeKey and groupByShape stack only messages whose shapes agree in every axis but axis 0', () => {
  const spec = [{ name: 'x', type: 'float32' as const, dims: ['N', 3, 'H', 'W'] }];
  const t = (dims: number[]) => ({
    x: { type: 'float32' as const, data: new Float32Array(dims.reduce((a, b) => a * b, 1)), dims },
  });
  const portrait = t([1, 3, 8, 2]);
  const landscape = t([1, 3, 2, 8]);
  assert.notEqual(shapeKey(portrait, spec), shapeKey(landscape, spec), 'same element count, different shape');
  assert.deepEqual(groupByShape([portrait, landscape, portrait, t([2, 3, 8, 2]), landscape], spec), [
    [0, 2, 3],
    [1, 4],
  ]);
  const two = [
    { name: 'a', type: 'float32' as const, dims: ['N', 2] },
    { name: 'b', type: 'float32' as const, dims: ['N', 2] },
  ];
  const mismatched = {
    a: { type: 'float32' as const, data: new Float32Array(2), dims: [1, 2] },
    b: { type: 'float32' as const, data: new Float32Array(4), dims: [2, 2] },
  };
  assert.equal(shapeKey(mismatched, two), undefined, 'inputs that disagree on axis 0 run alone');
  // A message shaped as the one before it joins that one's group without a key: runs, and breaks in them.
  const pair = (rows: number, width: number) => ({
    a: { type: 'float32' as const, data: new Float32Array(rows * width), dims: [rows, width] },
    b: { type: 'float32' as const, data: new Float32Array(rows * width), dims: [rows, width] },
  });
  assert.deepEqual(groupByShape([pair(1, 2), pair(2, 2), mismatched, pair(1, 2), mismatched, pair(1, 3)], two), [
    [0, 1, 3],
    [2],
    [4],
    [5],
  ]);
  const deeper = { x: { type: 'float32' as const, data: new Float32Array(32), dims: [1, 3, 8, 2, 1] } };
  assert.deepEqual(groupByShape([portrait, portrait, deeper, deeper, portrait], spec), [
    [0, 1, 4],
    [2, 3],
  ]);
});

test('two same-size images of different orientation in one batch, and a burst of 16 alternating ones, are each answered as alone', async () => {
  const bytes = orientation();
  await entry.init(context(modelDir('orientation', bytes)));
  assert.equal(entry.bootLog()[0].msg, 'batching on', 'a row-independent model still batches');
  const shapes = Array.from({ length: 16 }, (_, k) => (k % 2 === 0 ? [1, 3, 12, 4] : [1, 3, 4, 12]));
  const values = shapes.map((dims, k) => tensor(dims, 100 + k));
  for (const batch of [values.slice(0, 2), values]) {
    const answers = await answersOf(entry.runBatchParsed(batch));
    for (let k = 0; k < batch.length; k++) {
      const want = await alone(bytes, { x: { dims: shapes[k], value: batch[k] } });
      assert.deepEqual(answers[k], want.y, `message ${k}`);
    }
  }
});

test('a sequence-first RNN: messages sent together are answered as if alone, and batching is off with the reason', async () => {
  const bytes = seqFirstRnn();
  await entry.init(context(modelDir('rnn', bytes)));
  const [line] = entry.bootLog();
  assert.equal(line.msg, 'batching off');
  assert.match(String(line.fields.reason), /changes when messages are stacked along axis 0|no batch axis/);
  assert.match(String(line.fields.override), /BATCHING=on/);
  const values = [tensor([3, 1, 3], 1), tensor([3, 1, 3], 2), tensor([2, 1, 3], 3)];
  const answers = await answersOf(entry.runBatchParsed(values));
  for (let k = 0; k < values.length; k++) {
    const dims = [(values[k] as unknown[]).length, 1, 3];
    assert.deepEqual(answers[k], await alone(bytes, { x: { dims, value: values[k] } }), `message ${k}`);
  }
});

test('a model that mixes rows (softmax over axis 0) is scored one message per run', async () => {
  await entry.init(context(modelDir('mixes', mixesRows())));
  assert.equal(entry.bootLog()[0].msg, 'batching off');
  const answers = (await answersOf(entry.runBatchParsed([[[1, 2, 3]], [[4, 5, 6]]]))) as number[][][];
  assert.deepEqual(
    answers.map((a) => a[0].map(Math.round)),
    [
      [1, 1, 1],
      [1, 1, 1],
    ],
    'each alone: softmax over one row is 1',
  );
});

test('BATCHING=on stacks without verifying; BATCHING=off never stacks; a row-wise model verifies and batches', async () => {
  await entry.init(context(modelDir('mixes', mixesRows()), 'on'));
  assert.equal(entry.bootLog()[0].msg, 'batching on');
  const stacked = (await answersOf(entry.runBatchParsed([[[1, 2, 3]], [[1, 2, 3]]]))) as number[][][];
  assert.ok(Math.abs(stacked[0][0][0] - 0.5) < 1e-6, 'stacked: the two rows share the softmax');
  await entry.init(context(modelDir('rowwise', rowWise()), 'off'));
  assert.deepEqual(entry.bootLog()[0].fields.reason, 'BATCHING=off');
  await entry.init(context(modelDir('rowwise', rowWise())));
  assert.equal(entry.bootLog()[0].msg, 'batching on');
  assert.match(String(entry.bootLog()[0].fields.reason), /verified/);
});

test('a model the check cannot run on generated inputs is scored one message per run, and the boot line says so', async () => {
  // x [N, L] reshaped to rows of 5: L = 4 and L = 32, the sizes the check tries, are both refused.
  const { encode, node, tensorInfo } = await import('../support/onnx-models.js');
  const bytes = encode({
    nodes: [node('Reshape', ['x', 'shape'], ['y'])],
    inputs: [tensorInfo('x', 'float32', ['N', 'L'])],
    outputs: [tensorInfo('y', 'float32', [-1, 5])],
    initializers: [{ name: 'shape', dims: [2], dataType: 7, int64Data: [-1, 5] }],
  });
  await entry.init(context(modelDir('reshape5', bytes)));
  const [line] = entry.bootLog();
  assert.equal(line.msg, 'batching off');
  assert.match(String(line.fields.reason), /^could not run the check: the model refused generated inputs/);
  assert.deepEqual(await answersOf(entry.runBatchParsed([[[1, 2, 3, 4, 5]], [[6, 7, 8, 9, 10]]])), [
    [[1, 2, 3, 4, 5]],
    [[6, 7, 8, 9, 10]],
  ]);
});

test('bodies read one after another are stacked as a view of where they were read, with the same values', () => {
  const spec = { name: 'x', type: 'float32' as const, dims: [-1, 3] };
  const rows = [
    [0.1, 0.2, 0.3],
    [1.5, -2, 3e-8],
    [7, 8, 9],
  ];
  const feeds = rows.map((r) => {
    const t = readNumericTensor(Buffer.from(JSON.stringify({ data: [r] })), 'float32', 1000)!;
    return { x: { type: 'float32' as const, data: t.data, dims: t.dims } };
  });
  const stacked = stack(feeds, [spec]).x;
  assert.deepEqual(stacked.dims, [3, 3]);
  assert.deepEqual([...(stacked.data as Float32Array)], rows.flat().map(Math.fround));
  assert.equal((stacked.data as Float32Array).buffer, (feeds[0].x.data as Float32Array).buffer, 'no copy: a view');
  // Out of order they are not side by side: copied, still right.
  const swapped = stack([feeds[2], feeds[0]], [spec]).x;
  assert.deepEqual([...(swapped.data as Float32Array)], [...rows[2], ...rows[0]].map(Math.fround));
  const copy = swapped.data as Float32Array;
  const shares = (a: Float32Array, b: Float32Array) =>
    a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
  assert.ok(!feeds.some((f) => shares(copy, f.x.data as Float32Array)), 'a copy: it shares no byte with a row');
});
