/** OUTPUTS: only the outputs asked for are fetched, and the nodes only the others need are gone from the graph. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import onnxProto from 'onnx-proto';
import * as entry from '../../src/onnx/entry.js';
import { rewriteModel } from '../../src/onnx/graph-rewrite.js';
import { BootError } from '../../src/errors.js';
import { loadConfig, DEFAULTS_FILE } from '../../src/config.js';
import type { InitContext } from '../../src/isolate/entry-script.js';
import { modelDir, twoOutputs } from '../support/onnx-models.js';
import { answersOf } from '../support/answers.js';

const context = (dir: string, outputs: string[]): InitContext => ({
  modelDir: dir,
  maxTensorElements: 1_000_000,
  ort: { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false },
  onnx: { batching: 'auto', outputs },
});

test('OUTPUTS fetches only those outputs: the answer holds them alone', async () => {
  await entry.init(context(modelDir('two', twoOutputs()), []));
  const [both] = (await answersOf(entry.runBatchParsed([[[1, -2, 3, -4]]]))) as Array<Record<string, unknown>>;
  assert.deepEqual(Object.keys(both), ['small', 'big']);
  await entry.init(context(modelDir('two', twoOutputs()), ['small']));
  const [small] = await answersOf(entry.runBatchParsed([[[1, -2, 3, -4]]]));
  assert.deepEqual(small, [[1, 0, 3, 0]], 'one output left: answered bare, as any one-output model');
  await entry.init(context(modelDir('two', twoOutputs()), ['big', 'small']));
  const [again] = (await answersOf(entry.runBatchParsed([[[1, -2, 3, -4]]]))) as Array<Record<string, unknown>>;
  assert.deepEqual(again, both);
});

test('the outputs not asked for are not computed: their nodes and initializers are pruned from the graph', () => {
  const { bytes } = rewriteModel(twoOutputs(), { nonTensor: new Set(), keep: ['small'] });
  const graph = onnxProto.onnx.ModelProto.decode(bytes).graph!;
  assert.deepEqual(
    graph.node!.map((n) => n.opType),
    ['Relu'],
  );
  assert.deepEqual(
    graph.initializer!.map((t) => t.name),
    [],
  );
  assert.deepEqual(
    graph.output!.map((o) => o.name),
    ['small'],
  );
});

test('an OUTPUTS name the model lacks stops boot with one line naming it and the outputs there are', () => {
  assert.throws(
    () => rewriteModel(twoOutputs(), { nonTensor: new Set(), keep: ['small', 'probs'] }),
    (err: unknown) =>
      err instanceof BootError &&
      err.message === "config OUTPUTS: the model has no output 'probs'; its outputs are 'small', 'big'",
  );
});

test('OUTPUTS is read as comma-separated names; empty means every output', () => {
  const base = { AMQP_URL: 'amqp://localhost' };
  assert.deepEqual(loadConfig(base, DEFAULTS_FILE).onnx, { batching: 'auto', outputs: [] });
  assert.deepEqual(loadConfig({ ...base, OUTPUTS: 'label, probabilities', BATCHING: 'off' }, DEFAULTS_FILE).onnx, {
    batching: 'off',
    outputs: ['label', 'probabilities'],
  });
  assert.throws(
    () => loadConfig({ ...base, BATCHING: 'yes' }, DEFAULTS_FILE),
    /config BATCHING: expected one of "auto", "on", "off", got "yes"/,
  );
  assert.throws(
    () => loadConfig({ ...base, OUTPUTS: 'a,,b' }, DEFAULTS_FILE),
    /config OUTPUTS: expected output names separated by commas/,
  );
});
