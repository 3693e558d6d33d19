/**
 * Every ONNX element type in and out of the built-in script: an Identity model per type (made here),
 * values round-trip as onnxruntime-node returns them, bad values get TYPE errors naming the input.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import * as entry from '../../src/onnx/entry.js';
import { ScoringError } from '../../src/errors.js';
import {
  ELEMENT_TYPES,
  elementInfo,
  fromFloat16Bits,
  toFloat16Bits,
  type ElementType,
} from '../../src/onnx/element-types.js';
import type { InitContext } from '../../src/isolate/entry-script.js';
import { identity, modelDir } from '../support/onnx-models.js';
import { answersOf } from '../support/answers.js';

const context = (dir: string): InitContext => ({
  modelDir: dir,
  maxTensorElements: 1_000_000,
  ort: { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false },
  onnx: { batching: 'auto', outputs: [] },
});

/** Per type: good rows (as JSON sends them), what the reply holds, and bad values with what the error says. */
const CASES: Record<ElementType, { rows: unknown[][]; answer?: unknown[][]; bad: Array<[unknown, string]> }> = {
  float32: {
    rows: [[0.1, -3.4e38]],
    answer: [[Math.fround(0.1), Math.fround(-3.4e38)]],
    bad: [
      [3.5e38, 'outside the float32 range'],
      ['1', 'got string'],
    ],
  },
  float64: {
    rows: [[0.1, 1e300]],
    bad: [
      [1e400, 'outside the float64 range'],
      [null, 'got null'],
    ],
  },
  float16: {
    rows: [
      [0.1, -65504],
      [1 + 2 ** -11, 6e-8],
    ],
    answer: [
      [0.0999755859375, -65504],
      [1, 2 ** -24 * 1],
    ],
    bad: [
      [65520, 'outside the float16 range'],
      [true, 'got boolean'],
    ],
  },
  int8: {
    rows: [[-128, 127]],
    bad: [
      [128, 'outside the int8 range (-128 to 127)'],
      [1.5, 'not an integer'],
    ],
  },
  uint8: {
    rows: [[0, 255]],
    bad: [
      [-1, 'outside the uint8 range (0 to 255)'],
      [256, 'outside the uint8 range'],
    ],
  },
  int16: { rows: [[-32768, 32767]], bad: [[32768, 'outside the int16 range']] },
  uint16: { rows: [[0, 65535]], bad: [[65536, 'outside the uint16 range']] },
  int32: { rows: [[-2147483648, 2147483647]], bad: [[2147483648, 'outside the int32 range']] },
  uint32: {
    rows: [[0, 4294967295]],
    bad: [
      [-1, 'outside the uint32 range'],
      [4294967296, 'outside the uint32 range'],
    ],
  },
  int64: {
    rows: [
      [-9007199254740991, 9007199254740991],
      ['-9223372036854775808', '9223372036854775807'],
    ],
    answer: [
      [-9007199254740991, 9007199254740991],
      ['-9223372036854775808', '9223372036854775807'],
    ],
    bad: [
      [9007199254740993, 'not a safe integer'],
      ['9223372036854775808', 'outside the int64 range'],
      ['12a', 'not a decimal integer'],
    ],
  },
  uint64: {
    rows: [
      [0, 9007199254740991],
      ['18446744073709551615', '9007199254740993'],
    ],
    answer: [
      [0, 9007199254740991],
      ['18446744073709551615', '9007199254740993'],
    ],
    bad: [
      [-1, 'outside the uint64 range'],
      ['18446744073709551616', 'outside the uint64 range'],
    ],
  },
  bool: { rows: [[true, false]], bad: [[1, 'got number 1']] },
  string: { rows: [['a', 'ünïcødé']], bad: [[1, 'got number 1']] },
};

/** onnxruntime-node's own Identity output for the same tensor, each element through the table's toJson. */
async function ortIdentity(type: ElementType, rows: unknown[][]): Promise<unknown[][]> {
  const info = elementInfo(type);
  const flat = rows.flat().map((v) => info.fromJson(v));
  const data = info.allocate(flat.length) as unknown as unknown[];
  flat.forEach((v, k) => (data[k] = v));
  const session = await ort.InferenceSession.create(identity(type));
  const out = await session.run({ x: new ort.Tensor(type, data as never, [rows.length, 2]) });
  await session.release();
  const got = Array.from(out.y.data as ArrayLike<number | bigint | string>).map((v) => info.toJson(v));
  return rows.map((_, k) => got.slice(k * 2, k * 2 + 2));
}

for (const type of ELEMENT_TYPES) {
  test(`${type}: values round-trip as onnxruntime-node returns them; bad values get TYPE errors naming the input`, async () => {
    const c = CASES[type];
    await entry.init(context(modelDir(`identity-${type}`, identity(type))));
    const [answer] = await answersOf(entry.runBatchParsed([c.rows]));
    assert.deepEqual(answer, await ortIdentity(type, c.rows));
    assert.deepEqual(answer, c.answer ?? c.rows);
    const bad = await answersOf(entry.runBatchParsed(c.bad.map(([v]) => [[c.rows[0][0], v]])));
    bad.forEach((err, k) => {
      assert.ok(err instanceof ScoringError, `${JSON.stringify(c.bad[k][0])}: ${String(err)}`);
      assert.equal(err.code, 'TYPE');
      assert.ok(err.message.includes(`input 'x' expects ${type} elements`), err.message);
      assert.ok(err.message.includes(c.bad[k][1]), `"${err.message}" should say "${c.bad[k][1]}"`);
      assert.ok(err.message.includes('[0][1]'), 'and where');
    });
  });
}

test('float16 bits: rounding to nearest even straight from the double, subnormals, the range edge', () => {
  const cases: Array<[number, number]> = [
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65519.99, 0x7bff],
    [65520, 0x7c00],
    [0.1, 0x2e66],
    [2 ** -24, 0x0001],
    [2 ** -25, 0x0000],
    [2 ** -25 + 2 ** -40, 0x0001],
    [3 * 2 ** -25, 0x0002],
    [2 ** -14, 0x0400],
    [2 ** -14 - 2 ** -25, 0x0400],
    [1 + 2 ** -11, 0x3c00],
    [1 + 3 * 2 ** -11, 0x3c02],
    [1 + 2 ** -11 + 2 ** -40, 0x3c01],
    [-0, 0x8000],
    [0, 0],
  ];
  for (const [x, bits] of cases) assert.equal(toFloat16Bits(x), bits, `${x} → 0x${bits.toString(16)}`);
  for (let bits = 0; bits < 0x7c00; bits++)
    assert.equal(toFloat16Bits(fromFloat16Bits(bits)), bits, `every finite half round-trips (0x${bits.toString(16)})`);
});

test('integer inputs read straight from the bytes hold what the general path holds; a value out of range is left to it, which words the error', async () => {
  for (const type of ['uint8', 'int8', 'int16', 'uint16', 'int32', 'uint32'] as const) {
    await entry.init(context(modelDir(`identity-${type}`, identity(type))));
    const rows = CASES[type].rows;
    const prepared = entry.readBody(Buffer.from(JSON.stringify({ data: rows })));
    assert.ok(prepared, `${type}: read from the bytes`);
    assert.deepEqual(await answersOf(entry.runBatchParsed([prepared])), await answersOf(entry.runBatchParsed([rows])));
    for (const [bad] of CASES[type].bad) {
      if (typeof bad === 'number')
        assert.equal(
          entry.readBody(Buffer.from(JSON.stringify({ data: [[rows[0][0], bad]] }))),
          undefined,
          `${type} ${bad}`,
        );
    }
  }
});
