/** The JSON answers written from the output tensors are the general path's text, byte for byte, or none. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AnswerWriter } from '../../src/onnx/answer-json.js';
import { mulberry32 } from '../../src/onnx/batching.js';
import { splitOutputs, withZipMaps, type TensorData } from '../../src/onnx/tensors.js';

const utf8 = new TextDecoder();
/** The answers as text: what a reply's body carries. */
const text = (answers: Uint8Array[] | undefined) => answers?.map((a) => utf8.decode(a));

/** What the general path writes: the objects of splitOutputs and withZipMaps, then JSON.stringify. */
function general(
  outputs: Record<string, TensorData>,
  names: string[],
  zipMaps: Array<{ name: string; labels: string[] }>,
  rows: number[],
): string[] {
  return splitOutputs(outputs, names, rows).map((a) => JSON.stringify(withZipMaps(a, names, zipMaps)));
}

const ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
} as const;
type Numeric = keyof typeof ARRAYS;
const NUMERIC = Object.keys(ARRAYS) as Numeric[];

test('numeric outputs of every type, rank and batch split are written as JSON.stringify writes them', () => {
  const next = mulberry32(16);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
  for (let run = 0; run < 2000; run++) {
    const rows = Array.from(
      { length: 1 + Math.floor(next() * 4) },
      () => Math.floor(next() * 3) + (run % 7 === 0 ? 0 : 1),
    );
    const total = rows.reduce((a, b) => a + b, 0);
    const names = Array.from({ length: 1 + Math.floor(next() * 3) }, (_, i) =>
      pick(['y', 'label', '0', '10', '2', `o${i}`, '__proto__', 'é"q']),
    );
    const unique = [...new Set(names)];
    const outputs: Record<string, TensorData> = {};
    const zipMaps: Array<{ name: string; labels: string[] }> = [];
    for (const name of unique) {
      const zip = next() < 0.3;
      const rest = zip
        ? [1 + Math.floor(next() * 4)]
        : Array.from({ length: Math.floor(next() * 3) }, () => Math.floor(next() * 4));
      const size = total * rest.reduce((a, b) => a * b, 1);
      const kind = next();
      let t: TensorData;
      if (kind < 0.15) {
        const data = BigInt64Array.from({ length: size }, () => BigInt(Math.floor((next() - 0.5) * 2 ** 40)));
        t = { type: 'int64', data, dims: [total, ...rest] };
      } else {
        const type = pick(NUMERIC);
        const data = new ARRAYS[type](size);
        for (let i = 0; i < size; i++)
          data[i] = type.startsWith('float')
            ? (next() - 0.5) * 10 ** Math.floor(next() * 40 - 20)
            : next() * 1000 - 500;
        if (type.startsWith('float') && size > 0 && next() < 0.1) data[0] = -0;
        t = { type, data, dims: [total, ...rest] };
      }
      Object.defineProperty(outputs, name, { value: t, enumerable: true });
      if (zip)
        zipMaps.push({
          name,
          labels: Array.from({ length: rest[0] }, (_, i) => pick(['0', '1', '7', 'setosa', 'b', '__proto__', `${i}`])),
        });
    }
    const writer = new AnswerWriter(unique, zipMaps);
    const written = text(writer.write(outputs, rows));
    const expected = general(outputs, unique, zipMaps, rows);
    assert.ok(written, `run ${run}: numeric outputs are written`);
    assert.deepEqual(written, expected, `run ${run}`);
  }
});

test('a single unbatched message gets its outputs whole, a scalar output as a number', () => {
  const outputs: Record<string, TensorData> = {
    s: { type: 'float32', data: Float32Array.of(0.1), dims: [] },
    v: { type: 'int32', data: Int32Array.of(1, 2, 3), dims: [3] },
  };
  const writer = new AnswerWriter(['s', 'v'], []);
  assert.deepEqual(text(writer.write(outputs, [1])), general(outputs, ['s', 'v'], [], [1]));
  assert.deepEqual(text(writer.write(outputs, [1])), ['{"s":0.10000000149011612,"v":[1,2,3]}']);
});

test('values JSON writes otherwise, and types it cannot write, leave the batch to the general path', () => {
  const cases: TensorData[] = [
    { type: 'float32', data: Float32Array.of(1, Number.NaN), dims: [2, 1] },
    { type: 'float64', data: Float64Array.of(Number.POSITIVE_INFINITY, 1), dims: [2, 1] },
    { type: 'int64', data: BigInt64Array.of(1n, 2n ** 60n), dims: [2, 1] },
    { type: 'uint64', data: BigUint64Array.of(2n ** 63n, 1n), dims: [2, 1] },
    { type: 'bool', data: Uint8Array.of(1, 0), dims: [2, 1] },
    { type: 'float16', data: Uint16Array.of(0x3c00, 0), dims: [2, 1] },
    { type: 'string', data: ['a', 'b'], dims: [2, 1] },
  ];
  for (const t of cases) {
    assert.equal(new AnswerWriter(['y'], []).write({ y: t }, [1, 1]), undefined, t.type);
    assert.ok(general({ y: t }, ['y'], [], [1, 1]).length === 2, `${t.type}: the general path answers it`);
  }
  const probs: TensorData = { type: 'float32', data: Float32Array.of(0.5, 0.5), dims: [2, 1] };
  assert.equal(
    new AnswerWriter(['p'], [{ name: 'p', labels: ['a', 'b'] }]).write({ p: probs }, [1, 1]),
    undefined,
    'a ZipMap with more labels than columns (JSON leaves the missing ones out)',
  );
  assert.equal(new AnswerWriter(['y'], []).write({ y: probs }, [1, 2]), undefined, 'rows that do not add up');
  assert.equal(new AnswerWriter(['y'], []).write({}, [1, 1]), undefined, 'an output missing');
});

test('one writer over batches of changing size and width: each written right, and earlier answers left as they were', () => {
  const next = mulberry32(7);
  const writer = new AnswerWriter(['p'], []);
  const kept: Array<{ answers: Uint8Array[]; expected: string[] }> = [];
  // A lone short answer, then a large batch of long ones (the writer's buffer, 4 KB to start, must grow), and back.
  for (const [rows, width] of [
    [[1], 1],
    [Array.from({ length: 120 }, () => 1), 50],
    [[1], 3],
    [[2, 3, 1], 200],
    [[1], 1],
  ] as const) {
    const total = rows.reduce((a, b) => a + b, 0);
    const data = Float64Array.from({ length: total * width }, () => (next() - 0.5) * 1e6);
    const outputs = { p: { type: 'float64', data, dims: [total, width] } as TensorData };
    const answers = writer.write(outputs, [...rows]);
    assert.ok(answers);
    const expected = general(outputs, ['p'], [], [...rows]);
    assert.deepEqual(text(answers), expected);
    kept.push({ answers, expected });
  }
  for (const { answers, expected } of kept) assert.deepEqual(text(answers), expected);
});
