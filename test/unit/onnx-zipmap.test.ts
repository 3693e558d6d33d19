/**
 * scikit-learn's default export (LinearClassifier → Normalizer → ZipMap, made here as skl2onnx makes
 * it): it loads, and answers `output_probability` as Python's onnxruntime does, a list of
 * {label: probability} objects, with the numbers the model computes (its probability tensor, run by
 * onnxruntime-node directly).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import * as entry from '../../src/onnx/entry.js';
import { rewriteModel } from '../../src/onnx/graph-rewrite.js';
import { BootError } from '../../src/errors.js';
import type { InitContext } from '../../src/isolate/entry-script.js';
import {
  encode,
  modelDir,
  node,
  numbers,
  plainClassifier,
  seqMapInfo,
  tensorInfo,
  zipMapClassifier,
} from '../support/onnx-models.js';
import { answersOf } from '../support/answers.js';

const context = (dir: string, outputs: string[] = []): InitContext => ({
  modelDir: dir,
  maxTensorElements: 1_000_000,
  ort: { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false },
  onnx: { batching: 'auto', outputs },
});

const rows = [numbers(4, 1), numbers(4, 2), numbers(4, 3)].map((r) => r.map((v) => Math.fround(v * 5)));

/** label and probabilities straight from onnxruntime-node, on the export without ZipMap. */
async function computed(labels: number[], input = rows): Promise<{ label: unknown[]; probabilities: number[][] }> {
  const session = await ort.InferenceSession.create(plainClassifier(labels));
  const out = await session.run({
    float_input: new ort.Tensor('float32', Float32Array.from(input.flat()), [input.length, 4]),
  });
  await session.release();
  const p = [...(out.probabilities.data as Float32Array)];
  return {
    label: [...(out.label.data as BigInt64Array)].map(Number),
    probabilities: input.map((_, k) => p.slice(k * 3, k * 3 + 3)),
  };
}

test("a ZipMap classifier with int64 labels boots and answers labels and {label: probability} lists equal to the model's numbers", async () => {
  await entry.init(context(modelDir('zipmap-int', zipMapClassifier([0, 1, 2]))));
  const want = await computed([0, 1, 2]);
  const [answer] = (await answersOf(entry.runBatchParsed([rows]))) as Array<{
    label: number[];
    output_probability: Array<Record<string, number>>;
  }>;
  assert.deepEqual(answer.label, want.label);
  assert.deepEqual(
    answer.output_probability,
    want.probabilities.map((p) => ({ 0: p[0], 1: p[1], 2: p[2] })),
  );
  // Row by row too: a batch of several messages gives each its own list.
  const each = (await answersOf(entry.runBatchParsed(rows.map((r) => [r])))) as Array<{
    output_probability: unknown[];
  }>;
  each.forEach((a, k) =>
    assertClose(a.output_probability, [
      { 0: want.probabilities[k][0], 1: want.probabilities[k][1], 2: want.probabilities[k][2] },
    ]),
  );
});

/** A stacked run may sum in another order than a run of one row (float noise, not another answer). */
function assertClose(actual: unknown, expected: unknown): void {
  const flat = (v: unknown): number[] =>
    Array.isArray(v) ? v.flatMap(flat) : typeof v === 'object' && v ? Object.values(v).flatMap(flat) : [v as number];
  assert.deepEqual(
    JSON.stringify(actual).replace(/-?[0-9.e-]+/g, '#'),
    JSON.stringify(expected).replace(/-?[0-9.e-]+/g, '#'),
  );
  flat(expected).forEach((e, k) => assert.ok(Math.abs(flat(actual)[k] - e) < 1e-6, `${flat(actual)[k]} vs ${e}`));
}

test('a ZipMap classifier with string labels answers string labels and lists keyed by them', async () => {
  const names = ['setosa', 'versicolor', 'virginica'];
  await entry.init(context(modelDir('zipmap-str', zipMapClassifier(names))));
  const want = await computed([0, 1, 2]);
  const [answer] = (await answersOf(entry.runBatchParsed([rows]))) as Array<{
    label: string[];
    output_probability: Array<Record<string, number>>;
  }>;
  assert.deepEqual(
    answer.label,
    want.label.map((l) => names[l as number]),
  );
  assert.deepEqual(
    answer.output_probability,
    want.probabilities.map((p) => ({ setosa: p[0], versicolor: p[1], virginica: p[2] })),
  );
  assert.deepEqual(Object.keys(answer.output_probability[0]), names, 'in the order of classlabels_strings');
});

test('OUTPUTS=output_probability answers only the ZipMap list', async () => {
  await entry.init(context(modelDir('zipmap-only', zipMapClassifier([0, 1, 2])), ['output_probability']));
  const want = await computed([0, 1, 2], rows.slice(0, 1));
  const [answer] = (await answersOf(entry.runBatchParsed([rows.slice(0, 1)]))) as Array<Array<Record<string, number>>>;
  assert.deepEqual(answer, [{ 0: want.probabilities[0][0], 1: want.probabilities[0][1], 2: want.probabilities[0][2] }]);
});

test('a non-tensor output that is not a ZipMap is left out with a boot line naming it; with nothing else left, boot stops with how to export', async () => {
  const seqOut = (extraTensor: boolean) =>
    encode({
      nodes: [node('SequenceConstruct', ['x'], ['seq']), ...(extraTensor ? [node('Relu', ['x'], ['y'])] : [])],
      inputs: [tensorInfo('x', 'float32', ['N', 2])],
      outputs: [
        ...(extraTensor ? [tensorInfo('y', 'float32', ['N', 2])] : []),
        { name: 'seq', type: { sequenceType: { elemType: { tensorType: { elemType: 1 } } } } },
      ],
    });
  const kept = rewriteModel(seqOut(true), { nonTensor: new Set(['seq']), keep: [] });
  assert.deepEqual(kept.dropped, ['seq']);
  await entry.init(context(modelDir('seq-out', seqOut(true))));
  const line = entry.bootLog().find((l) => l.msg === 'outputs left out');
  assert.deepEqual(line?.fields.outputs, ['seq']);
  assert.deepEqual(await answersOf(entry.runBatchParsed([[[1, -2]]])), [[[1, 0]]], 'the tensor output is answered');
  assert.throws(
    () => rewriteModel(seqOut(false), { nonTensor: new Set(['seq']), keep: [] }),
    (err: unknown) => err instanceof BootError && /zipmap/i.test(err.message) && err.message.includes('seq'),
  );
  void seqMapInfo;
});
