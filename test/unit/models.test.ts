import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { IRIS_SEED, MLP_SEED, makeIrisModel, makeMlpModel } from '../../scripts/make-models.js';
import { loadIris, mulberry32, stratifiedSplit, trainSoftmax } from '../../scripts/train-iris.js';

const modelsDir = fileURLToPath(new URL('../../models/', import.meta.url));
const irisPath = path.join(modelsDir, 'iris.onnx');

function describe(meta: readonly ort.InferenceSession.ValueMetadata[]) {
  return meta.map((m) => (m.isTensor ? { name: m.name, type: m.type, shape: [...m.shape] } : { name: m.name }));
}

async function withSession<T>(file: string, fn: (s: ort.InferenceSession) => Promise<T>): Promise<T> {
  const session = await ort.InferenceSession.create(file);
  try {
    return await fn(session);
  } finally {
    await session.release();
  }
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'models-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function assertRowsSumToOne(probs: Float32Array, cols: number) {
  for (let r = 0; r < probs.length / cols; r++) {
    const sum = probs.subarray(r * cols, (r + 1) * cols).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-5, `row ${r} sums to ${sum}`);
  }
}

test('iris.onnx exposes float_input [N,4] -> label int64 [N], probabilities float32 [N,3]', async () => {
  await withSession(irisPath, async (s) => {
    assert.deepEqual(describe(s.inputMetadata), [{ name: 'float_input', type: 'float32', shape: ['N', 4] }]);
    assert.deepEqual(describe(s.outputMetadata), [
      { name: 'label', type: 'int64', shape: ['N'] },
      { name: 'probabilities', type: 'float32', shape: ['N', 3] },
    ]);
  });
});

test('iris.onnx classifies one textbook row of each species', async () => {
  const rows = [
    [5.1, 3.5, 1.4, 0.2],
    [7.0, 3.2, 4.7, 1.4],
    [6.3, 3.3, 6.0, 2.5],
  ];
  await withSession(irisPath, async (s) => {
    const out = await s.run({ float_input: new ort.Tensor('float32', Float32Array.from(rows.flat()), [3, 4]) });
    assert.deepEqual(Array.from(out.label.data as BigInt64Array, Number), [0, 1, 2]);
    assert.deepEqual(out.probabilities.dims, [3, 3]);
    assertRowsSumToOne(out.probabilities.data as Float32Array, 3);
  });
});

test('iris.json records 120/30 split and held-out accuracy >= 0.9', async () => {
  const meta = JSON.parse(await readFile(path.join(modelsDir, 'iris.json'), 'utf8'));
  assert.equal(meta.trainRows, 120);
  assert.equal(meta.testRows, 30);
  assert.deepEqual(meta.classes, ['setosa', 'versicolor', 'virginica']);
  assert.equal(meta.seed, IRIS_SEED);
  assert.ok(meta.testAccuracy >= 0.9, `testAccuracy ${meta.testAccuracy}`);
});

test('stratified split holds out 10 rows per class', () => {
  const { labels } = loadIris();
  const { train, test } = stratifiedSplit(labels, 10, mulberry32(IRIS_SEED));
  assert.equal(train.length, 120);
  assert.equal(test.length, 30);
  for (const c of [0, 1, 2]) assert.equal(test.filter((i) => labels[i] === c).length, 10);
  assert.equal(new Set([...train, ...test]).size, 150);
});

test('training is reproducible for a fixed seed', () => {
  const train = () => {
    const { features, labels } = loadIris();
    const split = stratifiedSplit(labels, 10, mulberry32(IRIS_SEED));
    return trainSoftmax(
      split.train.map((i) => features[i]),
      split.train.map((i) => labels[i]),
      { seed: IRIS_SEED },
    );
  };
  assert.deepEqual(train(), train());
});

test('regenerating iris.onnx reproduces the committed bytes', async () => {
  await withTempDir(async (dir) => {
    await makeIrisModel(dir);
    assert.ok((await readFile(path.join(dir, 'iris.onnx'))).equals(await readFile(irisPath)), 'iris.onnx differs');
    assert.equal(
      await readFile(path.join(dir, 'iris.json'), 'utf8'),
      await readFile(path.join(modelsDir, 'iris.json'), 'utf8'),
    );
  });
});

test('mlp.onnx maps input [N,784] to probabilities [N,10]', async () => {
  const committed = path.join(modelsDir, 'mlp', 'mlp.onnx');
  // models/mlp/ is gitignored, so a fresh clone has to build it.
  const check = async (file: string) =>
    withSession(file, async (s) => {
      assert.deepEqual(describe(s.inputMetadata), [{ name: 'input', type: 'float32', shape: ['N', 784] }]);
      assert.deepEqual(describe(s.outputMetadata), [{ name: 'probabilities', type: 'float32', shape: ['N', 10] }]);
      const rng = mulberry32(MLP_SEED + 1);
      const batch = Float32Array.from({ length: 3 * 784 }, () => rng());
      const out = await s.run({ input: new ort.Tensor('float32', batch, [3, 784]) });
      assert.deepEqual(out.probabilities.dims, [3, 10]);
      assertRowsSumToOne(out.probabilities.data as Float32Array, 10);
    });
  if (existsSync(committed)) await check(committed);
  else await withTempDir(async (dir) => check(await makeMlpModel(dir)));
});
