import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ScoringError, type ErrorCode } from '../../src/errors.js';
import {
  buildInputs,
  formatDims,
  splitOutputs,
  type ElementType,
  type TensorData,
  type TensorSpec,
} from '../../src/onnx/tensors.js';
import { canStack, stack as stackInputs } from '../../src/onnx/batching.js';

const limits = { maxTensorElements: 1_000_000 };
const spec = (
  type: ElementType = 'float32',
  dims: (number | string)[] = ['N', 4],
  name = 'float_input',
): TensorSpec => ({ name, type, dims });
const iris = [spec()];

function fails(fn: () => unknown, code: ErrorCode, ...parts: (string | RegExp)[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ScoringError, `expected a ScoringError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.ok(!err.message.includes('\n'), 'messages are one line');
    for (const p of parts)
      typeof p === 'string'
        ? assert.ok(err.message.includes(p), `"${err.message}" should include "${p}"`)
        : assert.match(err.message, p);
    return true;
  });
}

test('float32 rows become a Float32Array with the nested shape', () => {
  const { float_input: t } = buildInputs(
    [
      [5.1, 3.5, 1.4, 0.2],
      [6, 2.9, 4.5, 1.5],
    ],
    iris,
    limits,
  );
  assert.deepEqual(t.dims, [2, 4]);
  assert.ok(t.data instanceof Float32Array);
  assert.deepEqual([...t.data], [5.1, 3.5, 1.4, 0.2, 6, 2.9, 4.5, 1.5].map(Math.fround));
});

test('float64, int32, int64 and bool fill their own typed arrays', () => {
  const f64 = buildInputs([[0.1, 1e300]], [spec('float64', [-1, 2], 'x')], limits).x;
  assert.ok(f64.data instanceof Float64Array);
  assert.deepEqual([...f64.data], [0.1, 1e300]);
  const i32 = buildInputs([[-2147483648, 2147483647]], [spec('int32', [1, 2], 'x')], limits).x;
  assert.ok(i32.data instanceof Int32Array);
  assert.deepEqual([...i32.data], [-2147483648, 2147483647]);
  const i64 = buildInputs([[Number.MAX_SAFE_INTEGER], [-3]], [spec('int64', ['batch', 1], 'x')], limits).x;
  assert.ok(i64.data instanceof BigInt64Array);
  assert.deepEqual([...i64.data], [9007199254740991n, -3n]);
  const b = buildInputs([true, false, true], [spec('bool', [3], 'x')], limits).x;
  assert.ok(b.data instanceof Uint8Array);
  assert.deepEqual([...b.data], [1, 0, 1]);
});

test('a rank-0 input takes a bare scalar', () => {
  assert.deepEqual(buildInputs(7, [spec('int64', [], 'k')], limits).k, {
    type: 'int64',
    data: BigInt64Array.of(7n),
    dims: [],
  });
});

test('a single-input model also accepts {"<input name>": [...]}, but no other key', () => {
  assert.deepEqual(
    buildInputs({ float_input: [[1, 2, 3, 4]] }, iris, limits),
    buildInputs([[1, 2, 3, 4]], iris, limits),
  );
  fails(() => buildInputs({ other: [[1, 2, 3, 4]] }, iris, limits), 'SHAPE', "'float_input'", "'other'");
});

test('a multi-input model takes an object keyed by every input name', () => {
  const inputs = [spec('float32', [-1, 2], 'a'), spec('int64', [-1], 'b')];
  const out = buildInputs(
    {
      b: [1, 2],
      a: [
        [1, 2],
        [3, 4],
      ],
    },
    inputs,
    limits,
  );
  assert.deepEqual(Object.keys(out).sort(), ['a', 'b']);
  assert.deepEqual(out.b.dims, [2]);
  fails(() => buildInputs({ a: [[1, 2]] }, inputs, limits), 'SHAPE', "input 'b' is missing");
  fails(() => buildInputs({ a: [[1, 2]], b: [1], c: 1 }, inputs, limits), 'SHAPE', "unknown input 'c'");
  fails(() => buildInputs([[1, 2]], inputs, limits), 'SHAPE', 'object keyed by input name', 'got array');
});

test('a __proto__ key in multi-input data is an unknown input, not a prototype lookup', () => {
  const inputs = [spec('float32', [-1, 2], 'a'), spec('float32', [-1, 2], 'b')];
  const data = JSON.parse('{"a": [[1, 2]], "b": [[3, 4]], "__proto__": [[5, 6]]}');
  fails(() => buildInputs(data, inputs, limits), 'SHAPE', "unknown input '__proto__'");
  // A missing input must not be found on Object.prototype either.
  fails(
    () => buildInputs({ a: [[1, 2]] }, [inputs[0], spec('float32', [-1], 'toString')], limits),
    'SHAPE',
    "input 'toString' is missing",
  );
});

test('the wrong nesting depth is a SHAPE error naming the input, both ranks and both shapes', () => {
  fails(
    () => buildInputs([1, 2, 3, 4], iris, limits),
    'SHAPE',
    "input 'float_input' expects rank 2 (shape [-1,4]), got rank 1 (shape [4])",
  );
  fails(
    () => buildInputs([[[1, 2, 3, 4]]], iris, limits),
    'SHAPE',
    'expects rank 2 (shape [-1,4]), got rank 3 (shape [1,1,4])',
  );
  fails(() => buildInputs([[[[1]]]], iris, limits), 'SHAPE', 'got rank 4 or more (shape [1,1,1,...])');
});

test('a row of the wrong width is a SHAPE error naming the input and both shapes', () => {
  fails(() => buildInputs([[1, 2, 3]], iris, limits), 'SHAPE', "input 'float_input' expects shape [-1,4], got [1,3]");
});

test('a ragged array is a SHAPE error naming the input and the row', () => {
  fails(
    () =>
      buildInputs(
        [
          [1, 2, 3, 4],
          [1, 2, 3],
        ],
        iris,
        limits,
      ),
    'SHAPE',
    "input 'float_input' is ragged",
    '[1] has length 3',
    '[0] has length 4',
  );
  fails(() => buildInputs([[1, 2, 3, 4], 5], iris, limits), 'SHAPE', 'ragged', '[1] is a number');
  fails(
    () =>
      buildInputs(
        [
          [1, 2, 3, 4],
          [1, 2, [3], 4],
        ],
        iris,
        limits,
      ),
    'SHAPE',
    'ragged',
    '[1][2] is an array',
  );
});

test('an empty array anywhere is a SHAPE error', () => {
  fails(() => buildInputs([], iris, limits), 'SHAPE', "input 'float_input' got an empty array");
  fails(() => buildInputs([[]], iris, limits), 'SHAPE', "input 'float_input' got an empty array at [0]");
  fails(() => buildInputs([[1, 2, 3, 4], []], iris, limits), 'SHAPE', "input 'float_input' got an empty array at [1]");
});

test('a non-number element is a TYPE error naming the input, the type, the JSON type and the position', () => {
  fails(
    () => buildInputs([[1, 2, '3', 4]], iris, limits),
    'TYPE',
    "input 'float_input' expects float32 elements, got string at [0][2]",
  );
  fails(
    () =>
      buildInputs(
        [
          [1, 2, 3, 4],
          [1, null, 3, 4],
        ],
        iris,
        limits,
      ),
    'TYPE',
    'got null at [1][1]',
  );
  fails(() => buildInputs([[1, 2, 3, { v: 4 }]], iris, limits), 'TYPE', 'got object at [0][3]');
  fails(() => buildInputs([[true, 2, 3, 4]], iris, limits), 'TYPE', 'got boolean at [0][0]');
  fails(
    () => buildInputs([1, 0], [spec('bool', [2], 'm')], limits),
    'TYPE',
    "input 'm' expects bool elements, got number 1 at [0]",
  );
});

test('a number outside the float32 range is a TYPE error, not Infinity', () => {
  fails(
    () => buildInputs([[1, 1e300, 3, 4]], iris, limits),
    'TYPE',
    'float32',
    'number 1e+300',
    'outside the float32 range',
    '[0][1]',
  );
  fails(() => buildInputs([[1, -1e39, 3, 4]], iris, limits), 'TYPE', 'outside the float32 range');
  fails(
    () => buildInputs(JSON.parse('[1e400]'), [spec('float64', [1], 'x')], limits),
    'TYPE',
    'outside the float64 range',
  );
});

test('int32 rejects non-integers and values out of range', () => {
  const i32 = [spec('int32', [-1], 'ids')];
  fails(
    () => buildInputs([1, 2.5], i32, limits),
    'TYPE',
    "input 'ids' expects int32 elements, got number 2.5 (not an integer) at [1]",
  );
  fails(() => buildInputs([2147483648], i32, limits), 'TYPE', 'outside the int32 range');
});

test('int64 rejects integers beyond Number.MAX_SAFE_INTEGER and non-integers', () => {
  const i64 = [spec('int64', [-1], 'ids')];
  fails(
    () => buildInputs([9007199254740992], i64, limits),
    'TYPE',
    "input 'ids' expects int64 elements",
    'not a safe integer',
  );
  fails(() => buildInputs([0.5], i64, limits), 'TYPE', 'not an integer');
});

test('the element cap is checked from the shape before anything is allocated', () => {
  fails(
    () =>
      buildInputs(
        [
          [1, 2, 3, 4],
          [1, 2, 3, 4],
          [1, 2, 3, 4],
        ],
        iris,
        { maxTensorElements: 10 },
      ),
    'TOO_MANY_ELEMENTS',
    "input 'float_input'",
    '12 elements',
    'over MAX_TENSOR_ELEMENTS (10)',
  );
  // One long first row claims 1e6 × 1e6 elements; the cap fires before a 4 TB typed array is attempted.
  const row = new Array(1_000_000).fill(0);
  const hostile = new Array(1_000_000).fill([]);
  hostile[0] = row;
  fails(
    () => buildInputs(hostile, [spec('float32', [-1, -1], 'x')], limits),
    'TOO_MANY_ELEMENTS',
    '1000000000000 elements',
  );
});

test('nesting 100,000 deep gives a SHAPE error, not a RangeError', () => {
  const depth = 100_000;
  const deep: unknown = JSON.parse('['.repeat(depth) + ']'.repeat(depth)); // V8 parses this iteratively
  fails(() => buildInputs(deep, iris, limits), 'SHAPE', 'expects rank 2 (shape [-1,4]), got rank 4 or more');
  // The walk stops at rank + 1 levels: an array past that is seen but never opened.
  const trap: unknown[] = [];
  Object.defineProperty(trap, 0, { get: () => assert.fail('walked deeper than rank + 1') });
  fails(() => buildInputs([[[trap]]], iris, limits), 'SHAPE', 'got rank 4 or more');
  fails(
    () => buildInputs({ a: deep, b: [1] }, [spec('float32', [-1, 2], 'a'), spec('float32', [-1], 'b')], limits),
    'SHAPE',
    "input 'a'",
  );
});

test('canStack needs a dynamic axis 0 on every input; formatDims prints dynamic dims as -1', () => {
  assert.equal(canStack(iris), true);
  assert.equal(canStack([spec('float32', [-1, 4], 'a'), spec('int64', [1, 4], 'b')]), false);
  assert.equal(canStack([spec('float32', [], 'a')]), false);
  assert.equal(formatDims(['N', 4, -1, 'seq']), '[-1,4,-1,-1]');
});

test('stackInputs of 3 messages with 1, 2, 1 rows gives dims [4, ...] with data in message order', () => {
  const inputs = [spec('float32', [-1, 2], 'x'), spec('int64', [-1], 'k')];
  const msgs = [
    buildInputs({ x: [[1, 2]], k: [1] }, inputs, limits),
    buildInputs(
      {
        x: [
          [3, 4],
          [5, 6],
        ],
        k: [2, 3],
      },
      inputs,
      limits,
    ),
    buildInputs({ x: [[7, 8]], k: [4] }, inputs, limits),
  ];
  const batch = stackInputs(msgs, inputs);
  assert.deepEqual(batch.x.dims, [4, 2]);
  assert.deepEqual([...batch.x.data], [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(batch.k.dims, [4]);
  assert.deepEqual([...batch.k.data], [1n, 2n, 3n, 4n]);
});

test('splitOutputs gives each message its own rows: one output as a nested array', () => {
  const probs: TensorData = { type: 'float32', data: Float32Array.of(0.5, 0.5, 1, 0, 0, 1, 0.25, 0.75), dims: [4, 2] };
  assert.deepEqual(splitOutputs({ probs }, ['probs'], [1, 2, 1]), [
    [[0.5, 0.5]],
    [
      [1, 0],
      [0, 1],
    ],
    [[0.25, 0.75]],
  ]);
});

test('splitOutputs with several outputs gives objects keyed by output name, int64 as numbers and bool as booleans', () => {
  const outputs: Record<string, TensorData> = {
    label: { type: 'int64', data: BigInt64Array.of(2n, 0n, 1n), dims: [3] },
    flag: { type: 'bool', data: Uint8Array.of(1, 0, 1), dims: [3, 1] },
  };
  assert.deepEqual(splitOutputs(outputs, ['label', 'flag'], [2, 1]), [
    { label: [2, 0], flag: [[true], [false]] },
    { label: [1], flag: [[true]] },
  ]);
  assert.throws(() => splitOutputs(outputs, ['label'], [1, 1]), /cannot be split/);
});

test('stack then split round-trips every message', () => {
  const inputs = [spec('float64', [-1, 3], 'x')];
  const rows = [
    [[1, 2, 3]],
    [
      [4, 5, 6],
      [7, 8, 9],
    ],
    [[10, 11, 12]],
  ];
  const batch = stackInputs(
    rows.map((r) => buildInputs(r, inputs, limits)),
    inputs,
  );
  assert.deepEqual(
    splitOutputs(
      { y: batch.x },
      ['y'],
      rows.map((r) => r.length),
    ),
    rows,
  );
});
