import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ScriptMeta } from '../../src/isolate/entry-script.js';
import { ScoringError } from '../../src/errors.js';
import { convertTensor, convertsExactly, fromFloat16Bits } from '../../src/onnx/element-types.js';
import { writeNpy } from '../../src/isolate/npy.js';
import { writeSafetensors } from '../../src/isolate/safetensors.js';
import { binaryReply, readBinaryInputs, replyTypeOf, type BinaryModel } from '../../src/onnx/binary.js';
import { mediaType } from '../../src/isolate/content-types.js';
import { sliceOutputs, type TensorData, type TensorSpec } from '../../src/onnx/tensors.js';
import { npyLoad } from '../support/numpy.js';

const one: BinaryModel = {
  inputs: [{ name: 'x', type: 'float32', dims: ['N', 4] }],
  outputs: [{ name: 'y', type: 'float32', dims: ['N', 2] }],
  limits: { maxTensorElements: 1000 },
  image: 'not an image model',
};
const NPY = 'application/x-npy';

async function fails(body: Uint8Array, type: string, model: BinaryModel, code: string, pattern: RegExp): Promise<void> {
  // A tensor body is refused as it is read (a throw); an image as it is decoded (a rejection): either way, refused.
  await assert.rejects(
    async () => readBinaryInputs(body, type, model),
    (e: unknown) => e instanceof ScoringError && e.code === code && pattern.test(e.message),
  );
}

test('an .npy of the input type is the input as it is; one of a type that converts exactly is converted; any other is refused naming what to send', async () => {
  const f32 = writeNpy({ type: 'float32', data: new Float32Array([1, 2, 3, 4]), dims: [1, 4] });
  assert.deepEqual([...(await readBinaryInputs(f32, NPY, one)).x.data], [1, 2, 3, 4]);
  const u8 = writeNpy({ type: 'uint8', data: new Uint8Array([1, 2, 3, 255]), dims: [1, 4] });
  const x = (await readBinaryInputs(u8, 'application/x-npy; v=1', one)).x;
  assert.equal(x.type, 'float32');
  assert.ok(x.data instanceof Float32Array);
  assert.deepEqual([...x.data], [1, 2, 3, 255]);
  await fails(
    writeNpy({ type: 'float64', data: new Float64Array(4), dims: [1, 4] }),
    NPY,
    one,
    'TYPE',
    /input 'x' expects float32 elements, got a \.npy of float64; send float32 \(or float16, int8, int16, uint8, uint16, bool, converted exactly\)/,
  );
  await fails(
    writeNpy({ type: 'float32', data: new Float32Array(3), dims: [1, 3] }),
    NPY,
    one,
    'SHAPE',
    /input 'x' expects shape \[-1,4\], got \[1,3\]/,
  );
  await fails(
    writeNpy({ type: 'float32', data: new Float32Array(4), dims: [4] }),
    NPY,
    one,
    'SHAPE',
    /input 'x' expects rank 2 \(shape \[-1,4\]\), got rank 1 \(shape \[4\]\)/,
  );
  await fails(f32, 'text/csv', one, 'CONTENT_TYPE', /contentType 'text\/csv' is not taken/);
  await fails(f32, 'image/webp', one, 'CONTENT_TYPE', /image\/webp body refused: not an image model/);
});

test('a safetensors body with an input the model lacks is refused by name', async () => {
  const body = writeSafetensors({
    x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] },
    z: { type: 'float32', data: new Float32Array(1), dims: [1] },
  });
  await fails(body, 'application/x-safetensors', one, 'SHAPE', /unknown input 'z'; the model's inputs are 'x'/);
});

test('exact conversions keep every value: float16 bits, uint8 to int64 and float16', () => {
  assert.equal(fromFloat16Bits(0x3c00), 1);
  assert.equal(fromFloat16Bits(0xc100), -2.5);
  assert.equal(fromFloat16Bits(0x7bff), 65504);
  assert.equal(fromFloat16Bits(0x0001), 2 ** -24);
  assert.deepEqual(
    [...convertTensor({ type: 'float16', data: new Uint16Array([0x3c00, 0x3800]), dims: [2] }, 'float32').data],
    [1, 0.5],
  );
  assert.deepEqual(
    [...convertTensor({ type: 'uint8', data: new Uint8Array([0, 200]), dims: [2] }, 'int64').data],
    [0n, 200n],
  );
  const halves = convertTensor(
    { type: 'uint8', data: Uint8Array.from({ length: 256 }, (_, i) => i), dims: [256] },
    'float16',
  ).data as Uint16Array;
  assert.deepEqual(
    [...halves].map(fromFloat16Bits),
    Array.from({ length: 256 }, (_, i) => i),
  );
  assert.equal(convertsExactly('int64', 'float64'), false, 'above 2^53 it would round');
  assert.equal(convertsExactly('float32', 'float16'), false);
});

test('x-reply-content-type: JSON by default; .npy only for one output; anything else refused before the run', () => {
  const meta = (v?: string): ScriptMeta => ({
    contentType: 'application/json',
    headers: v === undefined ? {} : { 'x-reply-content-type': v },
  });
  const two: TensorSpec[] = [
    { name: 'label', type: 'int64', dims: ['N'] },
    { name: 'p', type: 'float32', dims: ['N', 3] },
  ];
  assert.equal(replyTypeOf(meta(), one.outputs), undefined);
  assert.equal(replyTypeOf(meta('application/json'), one.outputs), undefined);
  assert.equal(replyTypeOf(meta('application/x-npy'), one.outputs), NPY);
  assert.equal(replyTypeOf(meta('application/x-safetensors'), two), 'application/x-safetensors');
  assert.throws(
    () => replyTypeOf(meta('application/x-npy'), two),
    /carries one array, and the model has 2 outputs \('label', 'p'\); ask for application\/x-safetensors/,
  );
  assert.throws(
    () => replyTypeOf(meta('text/csv'), two),
    (e: unknown) =>
      e instanceof ScoringError && e.code === 'CONTENT_TYPE' && /'text\/csv' is not offered/.test(e.message),
  );
});

test("batched outputs are sliced per message along axis 0, and each message's .npy reply is what numpy reads", () => {
  const y = { type: 'float32' as const, data: Float32Array.from([1, 2, 3, 4, 5, 6]), dims: [3, 2] };
  const parts = sliceOutputs({ y }, ['y'], [1, 2]);
  assert.deepEqual(parts[1].y.dims, [2, 2]);
  assert.deepEqual([...parts[1].y.data], [3, 4, 5, 6]);
  const reply = binaryReply(NPY, parts[1], ['y']);
  assert.equal(reply.contentType, NPY);
  assert.deepEqual(npyLoad(reply.body), {
    dtype: 'float32',
    shape: [2, 2],
    values: [
      [3, 4],
      [5, 6],
    ],
  });
});

test('string elements, which .npy and safetensors cannot carry, are refused with TYPE naming the tensor, on the way in and out', async () => {
  const words: TensorData = { type: 'string', data: ['a', 'b'], dims: [2] };
  const isType = (pattern: RegExp) => (e: unknown) =>
    e instanceof ScoringError && e.code === 'TYPE' && pattern.test(e.message);
  assert.throws(
    () => binaryReply(NPY, { label: words }, ['label']),
    isType(/output 'label' has string elements, which a \.npy cannot carry; ask for JSON/),
  );
  assert.throws(
    () => binaryReply('application/x-safetensors', { label: words }, ['label']),
    isType(/tensor 'label' has string elements, which safetensors cannot carry; ask for JSON/),
  );
  const text: BinaryModel = { ...one, inputs: [{ name: 's', type: 'string', dims: ['N'] }] };
  await fails(
    writeNpy({ type: 'float32', data: new Float32Array(2), dims: [2] }),
    NPY,
    text,
    'TYPE',
    /input 's' expects string elements, which a \.npy body cannot carry; send JSON/,
  );
});

test('a content type is read as its media type alone, lower-cased, whatever came before it (the last answer is kept)', () => {
  const cases: Array<[string | undefined, string]> = [
    ['Image/PNG; q=1', 'image/png'],
    ['application/x-npy', 'application/x-npy'],
    ['application/x-npy', 'application/x-npy'],
    [' APPLICATION/JSON ;charset=utf-8', 'application/json'],
    ['Image/PNG; q=1', 'image/png'],
    [undefined, ''],
    ['', ''],
    ['image/png', 'image/png'],
  ];
  for (const [contentType, media] of cases) assert.equal(mediaType(contentType), media, String(contentType));
});
