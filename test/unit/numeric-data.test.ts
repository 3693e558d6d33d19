import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readNumericData, readNumericTensor } from '../../src/isolate/numeric-data.js';
import { mulberry32 } from '../../scripts/train-iris.js';

const bytes = (text: string) => Buffer.from(text, 'utf8');

/** A JSON number as a producer might write it: sign, 1–15 digits, a point anywhere (or none), zeros. */
function numberText(next: () => number): string {
  const digits = 1 + Math.floor(next() * 15);
  let s = '';
  for (let i = 0; i < digits; i++) s += String(Math.floor(next() * 10));
  const point = Math.floor(next() * (digits + 1));
  let int = s.slice(0, point).replace(/^0+(?=\d)/, '') || '0';
  const frac = s.slice(point);
  if (next() < 0.05) int = '0';
  return `${next() < 0.3 ? '-' : ''}${int}${frac ? `.${frac}` : ''}`;
}

test('number-only data reads exactly as JSON.parse reads it, bit for bit, -0 included', () => {
  const next = mulberry32(7);
  const space = () => [' ', '', '', '\n', '\t', '\r\n'][Math.floor(next() * 6)];
  for (let n = 0; n < 2000; n++) {
    const rank = 1 + Math.floor(next() * 4);
    const build = (level: number): string => {
      const len = 1 + Math.floor(next() * (level === rank - 1 ? 12 : 3));
      const items = Array.from({ length: len }, () => (level === rank - 1 ? numberText(next) : build(level + 1)));
      return `[${space()}${items.join(`${space()},${space()}`)}${space()}]`;
    };
    const text = `${space()}{${space()}"data"${space()}:${space()}${build(0)}${space()}}${space()}`;
    assert.deepStrictEqual(readNumericData(bytes(text)), JSON.parse(text).data, text);
  }
  assert.ok(Object.is((readNumericData(bytes('{"data":[-0, -0.0, 0]}')) as number[])[0], -0));
});

test('decimals of up to 15 digits round to the same double as JSON.parse gives', () => {
  const next = mulberry32(11);
  for (let n = 0; n < 200_000; n++) {
    const t = numberText(next);
    const [got] = readNumericData(bytes(`{"data":[${t}]}`)) as number[];
    assert.ok(Object.is(got, JSON.parse(t)), `${t}: got ${got}, JSON.parse ${JSON.parse(t)}`);
  }
});

test('a body that is not exactly {"data": arrays of plain numbers} is left to the general path', () => {
  const others = [
    '',
    '{}',
    '{"data":5}',
    '{"data":null}',
    '{"data":"[1]"}',
    '{"data":[1],"id":2}',
    '{"id":2,"data":[1]}',
    '{"d\\u0061ta":[1]}',
    '\uFEFF{"data":[1]}',
    '{"data":[1]} x',
    '{"data":[1]',
    '{"data":[1,]}',
    '{"data":[,1]}',
    '{"data":[1 2]}',
    '{"data":[01]}',
    '{"data":[1.]}',
    '{"data":[.5]}',
    '{"data":[+1]}',
    '{"data":[1e]}',
    '{"data":[1e+]}',
    '{"data":[1.e5]}',
    '{"data":[-]}',
    '{"data":[NaN]}',
    '{"data":[true]}',
    '{"data":[[1],2]}',
    '{"data":[1,[2]]}',
    '{"data":["1"]}',
    `{"data":${'['.repeat(17)}1${']'.repeat(17)}}`,
  ];
  for (const text of others) assert.equal(readNumericData(bytes(text)), undefined, text);
});

test('empty arrays read as JSON.parse reads them (the tensor checks word the error)', () => {
  assert.deepStrictEqual(readNumericData(bytes('{"data":[]}')), []);
  assert.deepStrictEqual(readNumericData(bytes('{"data":[[], []]}')), [[], []]);
});

test("rectangular number-only data reads straight into a typed array: JSON.parse's values, flattened, and their shape", () => {
  const next = mulberry32(13);
  for (let n = 0; n < 500; n++) {
    const dims = Array.from({ length: 1 + Math.floor(next() * 3) }, () => 1 + Math.floor(next() * 5));
    const build = (level: number): string =>
      `[${Array.from({ length: dims[level] }, () => (level === dims.length - 1 ? numberText(next) : build(level + 1))).join(', ')}]`;
    const text = `{"data": ${build(0)}}`;
    const flat = (JSON.parse(text).data as unknown[]).flat(dims.length) as number[];
    const f64 = readNumericTensor(bytes(text), 'float64', 1 << 20);
    assert.deepStrictEqual(f64, { dims, data: Float64Array.from(flat) }, text);
    const f32 = readNumericTensor(bytes(text), 'float32', 1 << 20);
    assert.deepStrictEqual(f32, { dims, data: Float32Array.from(flat) }, text);
  }
});

test('a tensor read gives up on whatever the tensor checks must word: ragged, empty, over the cap', () => {
  const none = [
    '{"data":[[1,2],[3]]}',
    '{"data":[[1],[2,3]]}',
    '{"data":[[1],2]}',
    '{"data":[1,[2]]}',
    '{"data":[[[1]],[2]]}',
    '{"data":[[1],[[2]]]}',
    '{"data":[]}',
    '{"data":[[],[]]}',
    '{"data":[[[]],[[1]]]}',
    '{"data":[1],"id":2}',
    `{"data":${'['.repeat(17)}1${']'.repeat(17)}}`,
  ];
  for (const text of none) assert.equal(readNumericTensor(bytes(text), 'float32', 100), undefined, text);
  assert.equal(readNumericTensor(bytes('{"data":[[1,2],[3,4]]}'), 'float32', 3), undefined, 'over maxElements');
  assert.deepStrictEqual(
    readNumericTensor(bytes('{"data":[[1,2],[3,4]]}'), 'float32', 4)?.dims,
    [2, 2],
    'exactly maxElements',
  );
  // float32 overflows from about 3.4e38 and float64 past 1.8e308: the tensor checks word "outside the range".
  assert.equal(
    readNumericTensor(bytes('{"data":[340282356779733660000000000000000000000]}'), 'float32', 10),
    undefined,
  );
  assert.equal(readNumericTensor(bytes('{"data":[3.5e38]}'), 'float32', 10), undefined);
  assert.equal(readNumericTensor(bytes('{"data":[1e400]}'), 'float64', 10), undefined);
  // JSON.parse makes it Infinity, which a script would get as null: the general path answers BAD_JSON instead.
  assert.equal(readNumericData(bytes('{"data":[1e400]}')), undefined, 'left to the general path');
});

test('a body larger than the reader keeps between bodies reads as well as a small one', () => {
  const big = Array.from({ length: 200_000 }, (_, i) => (i % 1000) / 8);
  const text = `{"data":[${big.join(',')}]}`;
  assert.deepStrictEqual(readNumericData(bytes(text)), big);
  assert.deepStrictEqual(readNumericTensor(bytes(text), 'float64', 1 << 20)?.data, Float64Array.from(big));
  assert.deepStrictEqual(readNumericTensor(bytes('{"data":[[1.5,2],[3,4]]}'), 'float32', 10), {
    dims: [2, 2],
    data: Float32Array.of(1.5, 2, 3, 4),
  });
});
