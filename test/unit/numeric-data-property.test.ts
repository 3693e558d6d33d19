/**
 * The fast numeric reader against JSON.parse, over generated bodies (numbers of any digit count, with
 * and without exponents, as json.dumps and JavaScript write them) and mutations of them (most of
 * them invalid): whenever it reads a body, it reads exactly what JSON.parse (then Math.fround, for
 * float32) gives; it never reads a body JSON.parse refuses; and it reads every valid generated body.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readNumericData, readNumericTensor } from '../../src/isolate/numeric-data.js';
import { mulberry32 } from '../../scripts/train-iris.js';

const next = mulberry32(2026);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
const digits = (n: number): string => Array.from({ length: n }, () => String(Math.floor(next() * 10))).join('');

/** One JSON number in one of the forms producers write. */
function numberText(): string {
  const x = (next() - 0.5) * 10 ** Math.floor(next() * 20 - 10);
  switch (Math.floor(next() * 8)) {
    case 0:
      return String(Math.fround(x)); // JavaScript's shortest form of a float32
    case 1:
      return Math.fround(x).toPrecision(17); // json.dumps of float32 data: 17 significant digits
    case 2:
      return x.toExponential(Math.floor(next() * 20));
    case 3:
      return String(x);
    case 4: {
      // any digit count, a point anywhere, an exponent or not
      const int = next() < 0.3 ? '0' : `${1 + Math.floor(next() * 9)}${digits(Math.floor(next() * 30))}`;
      const frac = next() < 0.5 ? `.${digits(1 + Math.floor(next() * 30))}` : '';
      const exp = next() < 0.5 ? `${pick(['e', 'E'])}${pick(['', '+', '-'])}${digits(1 + Math.floor(next() * 3))}` : '';
      return `${next() < 0.4 ? '-' : ''}${int}${frac}${exp}`;
    }
    case 5:
      return pick([
        '0',
        '-0',
        '0.0',
        '-0.0e5',
        '1e-400',
        '1e400',
        '-1e400',
        '3.4028235e38',
        '3.4028236e38',
        '1.401298464324817e-45',
        '7e-46',
        '0e999999999999',
      ]);
    case 6:
      return String(Math.floor(x * 1000));
    default:
      return `${pick(['', '-'])}${digits(1)}.${digits(Math.floor(next() * 25) + 1)}`; // many decimals
  }
}

const space = () => pick([' ', '', '', '', '\n', '\t', '\r\n']);

function body(): { text: string; rectangular: boolean } {
  const rank = 1 + Math.floor(next() * 3);
  const lengths = Array.from({ length: rank }, (_, level) => 1 + Math.floor(next() * (level === rank - 1 ? 8 : 3)));
  const ragged = next() < 0.1;
  const build = (level: number): string => {
    const n = ragged && next() < 0.3 ? 1 + Math.floor(next() * 4) : lengths[level];
    const items = Array.from({ length: n }, () => (level === rank - 1 ? numberText() : build(level + 1)));
    return `[${space()}${items.join(`${space()},${space()}`)}${space()}]`;
  };
  return {
    text: `${space()}{${space()}"data"${space()}:${space()}${build(0)}${space()}}${space()}`,
    rectangular: !ragged,
  };
}

const MUTATIONS = [
  '0',
  '1',
  '9',
  '.',
  'e',
  'E',
  '+',
  '-',
  ' ',
  ',',
  '[',
  ']',
  '{',
  '}',
  '"',
  'x',
  '00',
  '-.',
  'e+',
  '\u00a0',
];

function mutate(text: string): string {
  let t = text;
  for (let k = 1 + Math.floor(next() * 3); k > 0; k--) {
    const at = Math.floor(next() * (t.length + 1));
    const kind = next();
    if (kind < 0.4) t = t.slice(0, at) + pick(MUTATIONS) + t.slice(at);
    else if (kind < 0.7) t = t.slice(0, at) + t.slice(at + 1);
    else t = t.slice(0, at) + pick(MUTATIONS) + t.slice(at + 1);
  }
  return t;
}

function parsed(text: string): { ok: true; data: unknown } | { ok: false } {
  try {
    return { ok: true, data: (JSON.parse(text) as { data: unknown }).data };
  } catch {
    return { ok: false };
  }
}

/** What the reader must give for a float32 tensor: JSON.parse's values, Math.fround, flattened, with their shape. */
function asFloat32(data: unknown): { dims: number[]; data: Float32Array } | undefined {
  const dims: number[] = [];
  for (let node = data; Array.isArray(node); node = node[0]) dims.push(node.length);
  const flat = (data as unknown[]).flat(dims.length) as unknown[];
  if (flat.some((v) => typeof v !== 'number') || dims.includes(0)) return undefined;
  const f = Float32Array.from(flat as number[]);
  if (f.some((v) => !Number.isFinite(v))) return undefined;
  return { dims, data: f };
}

function check(text: string, shouldRead: boolean): void {
  const bytes = Buffer.from(text);
  const want = parsed(text);
  const nested = readNumericData(bytes);
  const f32 = readNumericTensor(bytes, 'float32', 1 << 20);
  const f64 = readNumericTensor(bytes, 'float64', 1 << 20);
  if (!want.ok) {
    assert.equal(nested, undefined, `JSON.parse refuses ${text}`);
    assert.equal(f32, undefined, `JSON.parse refuses ${text}`);
    assert.equal(f64, undefined, `JSON.parse refuses ${text}`);
    return;
  }
  if (nested !== undefined) assert.deepStrictEqual(nested, want.data, text);
  if (f32 !== undefined) {
    const expected = asFloat32(want.data);
    assert.ok(expected, `read as float32, but JSON.parse gives no finite rectangular tensor: ${text}`);
    assert.deepStrictEqual(f32.dims, expected.dims, text);
    for (let k = 0; k < expected.data.length; k++)
      assert.ok(
        Object.is(f32.data[k], expected.data[k]),
        `element ${k}: ${f32.data[k]} vs ${expected.data[k]} in ${text}`,
      );
  }
  if (f64 !== undefined) assert.deepStrictEqual([...f64.data], (want.data as unknown[]).flat(10), text);
  // A number beyond a double (1e400) is left to the general path, which answers BAD_JSON naming it.
  const finite = [want.data].flat(20).every((v) => typeof v !== 'number' || Number.isFinite(v));
  if (!finite) assert.equal(nested, undefined, `a number beyond a double is left to the general path: ${text}`);
  if (shouldRead && finite) {
    assert.notEqual(nested, undefined, `every valid number-only body is read: ${text}`);
    if (asFloat32(want.data))
      assert.notEqual(f32, undefined, `every finite rectangular body is read as float32: ${text}`);
  }
}

test('generated bodies: every one is read, exactly as JSON.parse (then Math.fround) reads it', () => {
  for (let n = 0; n < 5_000; n++) {
    const { text, rectangular } = body();
    check(text, rectangular);
  }
});

test('mutated bodies, valid or not: the reader never reads what JSON.parse refuses, and reads the rest exactly', () => {
  for (let n = 0; n < 10_000; n++) check(mutate(body().text), false);
});

test('numbers at the edges: float32 halfway cases, subnormals, huge digit counts, huge exponents', () => {
  const edges = [
    '16777217',
    '16777217.00000000001',
    '16777217.000000000001',
    '-16777219.0000000000001',
    '16777216.999999999999',
    '0.10000000149011611938',
    '0.10000000149011612',
    '3.4028235677973366e38',
    '3.4028235677973362e38',
    '1.1754943508222875e-38',
    '1.4e-45',
    '7.006492321624085e-46',
    '7.006492321624086e-46',
    `1${'0'.repeat(400)}e-400`,
    `0.${'0'.repeat(400)}1e400`,
    '123456789012345678901234567890',
    '9007199254740993',
    '9007199254740993.0000000001',
    '2.2250738585072011e-308',
    '4.9e-324',
    '2e-324',
    '1.7976931348623157e308',
    '1.7976931348623159e308',
    '-0e-0',
  ];
  for (const e of edges) check(`{"data":[${e}]}`, true);
});

test('a body cut off at any byte is never read (the end of the buffer inside a number included)', () => {
  const texts = [
    '{"data":[[1.5e-3, -0.25, 12345678901234567890, 3E+2]]}',
    '{"data": [0.10000000149011612, 1e400]}',
    '{"data":[-0.0]}',
  ];
  for (const text of texts) for (let k = 0; k < text.length; k++) check(text.slice(0, k), false);
});
