import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sampleInput } from '../../src/onnx/sample-input.js';
import { dataSchema } from '../../src/onnx/schema.js';
import { buildInputs, type TensorSpec } from '../../src/onnx/tensors.js';

const limits = { maxTensorElements: 1_000_000 };

test('a generated input fits the model it was generated for: free axes get one row, fixed ones their size', () => {
  const specs: TensorSpec[] = [{ name: 'float_input', type: 'float32', dims: ['batch', 4] }];
  const data = sampleInput(dataSchema(specs));
  assert.deepEqual(data, [[0, 0, 0, 0]]);
  const feeds = buildInputs(data, specs, limits);
  assert.deepEqual(feeds.float_input.dims, [1, 4]);
});

test('a multi-input model gets an object keyed by input name, each of its own type and shape', () => {
  const specs: TensorSpec[] = [
    { name: 'x', type: 'float32', dims: [-1, 2, 3] },
    { name: 'mask', type: 'bool', dims: [1, 2] },
    { name: 'ids', type: 'int64', dims: [2] },
  ];
  const data = sampleInput(dataSchema(specs)) as Record<string, unknown>;
  assert.deepEqual(data.mask, [[false, false]]);
  assert.deepEqual(data.ids, [0, 0]);
  const feeds = buildInputs(data, specs, limits);
  assert.deepEqual(feeds.x.dims, [1, 2, 3]);
  assert.deepEqual(feeds.mask.dims, [1, 2]);
  assert.deepEqual(feeds.ids.dims, [2]);
});
