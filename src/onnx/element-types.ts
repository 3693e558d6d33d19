/**
 * The one table of ONNX tensor element types: the names onnxruntime-node uses, the array each is held
 * in, how one element is read from JSON and written back, and how the binary formats (.npy,
 * safetensors) name and lay it out. Everything that turns values into tensors (JSON in
 * src/onnx/tensors.ts, binary bodies in src/isolate/) asks this table, so a type is added in one place.
 * No onnxruntime import: it runs in worker threads and the isolate.
 *
 * Choices a user can see:
 * - float16 is held as its IEEE half bits in a Uint16Array (what onnxruntime-node takes and returns on
 *   Node 20), read from and written as plain JSON numbers, rounded to nearest even.
 * - int64 and uint64 come as JSON integers up to 2^53-1 in magnitude, or as JSON strings of decimal
 *   digits for the full 64-bit range: JSON.parse has already rounded a bigger number, so a number
 *   beyond 2^53-1 is refused rather than scored as a neighbour. Answers are numbers while exact, and
 *   decimal strings beyond 2^53-1, never a rounded number.
 * - bool is true/false (held as 0/1 in a Uint8Array); string is a JSON string, and the one type the
 *   binary formats cannot carry (no `binary` entry).
 */
import { clip } from '../errors.js';

export type ElementType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool'
  | 'string';

export type TypedData =
  | Float32Array
  | Float64Array
  | Uint16Array // float16 as bits
  | Int8Array
  | Uint8Array
  | Int16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array // bool as Uint8Array
  | string[];

/** Every TypedData but string[]: what a binary body's bytes can be viewed as. */
export type NumericData = Exclude<TypedData, string[]>;

/**
 * A tensor of any element type; float16 is its bits in a Uint16Array, bool a Uint8Array of 0/1.
 * TensorData<NumericData> is one read from a binary body, which never holds strings.
 */
export interface TensorData<D extends TypedData = TypedData> {
  type: ElementType;
  data: D;
  dims: number[];
}

export type Element = number | bigint | string;

type ArrayMaker = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericData;
  new (length: number): NumericData;
  readonly BYTES_PER_ELEMENT: number;
};

/** How the binary formats carry a type. */
export interface BinaryCodes {
  /** NumPy's type code after the byte-order character: f4, i8, u1, b1... */
  readonly npy: string;
  readonly safetensors: string;
  readonly bytes: number;
  readonly array: ArrayMaker;
}

/** Why a JSON value is not an element of the type: `wrongKind` for a value of another JSON type, else `why` a number (or string) is refused. */
export class ElementProblem {
  constructor(readonly why?: string) {}
}

export interface ElementInfo {
  readonly type: ElementType;
  allocate(n: number): TypedData;
  /** One JSON value → the element as stored, or throws an ElementProblem. */
  fromJson(v: unknown): Element;
  /** One stored element → its JSON value. */
  toJson(x: Element): unknown;
  /** JSON Schema of one element. */
  readonly jsonSchema: object;
  /** A valid element from r in [0, 1), for the boot check of batching. */
  sample(r: number): Element;
  /** Absent for string, which .npy and safetensors cannot carry. */
  readonly binary?: BinaryCodes;
}

const WRONG_KIND = new ElementProblem();

const codes = (npy: string, safetensors: string, bytes: number, array: ArrayMaker): BinaryCodes => ({
  npy,
  safetensors,
  bytes,
  array,
});

function integer(type: ElementType, min: number, max: number, binary: BinaryCodes): ElementInfo {
  const range = `outside the ${type} range (${min} to ${max})`;
  return {
    type,
    binary,
    allocate: (n) => new binary.array(n),
    fromJson(v) {
      if (typeof v !== 'number') throw WRONG_KIND;
      if (!Number.isInteger(v)) throw new ElementProblem('not an integer');
      if (v < min || v > max) throw new ElementProblem(range);
      return v;
    },
    toJson: (x) => x,
    jsonSchema: { type: 'integer', minimum: min, maximum: max },
    sample: (r) => (r < 0.5 ? 0 : 1),
  };
}

function wide(type: 'int64' | 'uint64', min: bigint, max: bigint, binary: BinaryCodes): ElementInfo {
  const range = `outside the ${type} range (${min} to ${max})`;
  return {
    type,
    binary,
    allocate: (n) => new binary.array(n),
    fromJson(v) {
      if (typeof v === 'number') {
        if (!Number.isInteger(v)) throw new ElementProblem('not an integer');
        // Beyond 2^53 JSON.parse has already rounded the value, so we refuse rather than send a wrong id.
        if (!Number.isSafeInteger(v))
          throw new ElementProblem(
            `not a safe integer (|n| > 2^53-1); send larger ${type} values as JSON strings of digits, e.g. "9007199254740993"`,
          );
        if (v < 0 && min === 0n) throw new ElementProblem(range);
        return BigInt(v);
      }
      if (typeof v === 'string') {
        if (!/^-?[0-9]{1,20}$/.test(v))
          throw new ElementProblem(`a string that is not a decimal integer: "${clip(v, 24)}"`);
        const n = BigInt(v);
        if (n < min || n > max) throw new ElementProblem(range);
        return n;
      }
      throw WRONG_KIND;
    },
    toJson: (x) => ((x as bigint) >= -9007199254740991n && (x as bigint) <= 9007199254740991n ? Number(x) : String(x)),
    jsonSchema: {
      type: ['integer', 'string'],
      pattern: '^-?[0-9]+$',
      description: 'a JSON integer up to 2^53-1 in magnitude, or a decimal string for any value',
    },
    sample: (r) => (r < 0.5 ? 0n : 1n),
  };
}

function float(type: 'float32' | 'float64', binary: BinaryCodes): ElementInfo {
  const round = type === 'float32' ? Math.fround : (x: number) => x;
  const range = new ElementProblem(`outside the ${type} range`);
  return {
    type,
    binary,
    allocate: (n) => new binary.array(n),
    fromJson(v) {
      if (typeof v !== 'number') throw WRONG_KIND;
      const x = round(v);
      if (x === Infinity || x === -Infinity) throw range; // JSON.parse('1e400') is Infinity
      return x;
    },
    toJson: (x) => x,
    jsonSchema: { type: 'number' },
    sample: (r) => round(r * 2 - 1),
  };
}

const FLOAT16_RANGE = new ElementProblem('outside the float16 range (±65504)');

// In this order in every list a user reads (the types to send, the dtypes read).
const TABLE: Record<ElementType, ElementInfo> = {
  float32: float('float32', codes('f4', 'F32', 4, Float32Array)),
  float64: float('float64', codes('f8', 'F64', 8, Float64Array)),
  float16: {
    type: 'float16',
    binary: codes('f2', 'F16', 2, Uint16Array),
    allocate: (n) => new Uint16Array(n),
    fromJson(v) {
      if (typeof v !== 'number') throw WRONG_KIND;
      const bits = toFloat16Bits(v);
      if ((bits & 0x7fff) === 0x7c00) throw FLOAT16_RANGE;
      return bits;
    },
    toJson: (x) => fromFloat16Bits(x as number),
    jsonSchema: { type: 'number', minimum: -65504, maximum: 65504 },
    sample: (r) => toFloat16Bits(r * 2 - 1),
  },
  int8: integer('int8', -128, 127, codes('i1', 'I8', 1, Int8Array)),
  int16: integer('int16', -32768, 32767, codes('i2', 'I16', 2, Int16Array)),
  int32: integer('int32', -2147483648, 2147483647, codes('i4', 'I32', 4, Int32Array)),
  int64: wide('int64', -(2n ** 63n), 2n ** 63n - 1n, codes('i8', 'I64', 8, BigInt64Array)),
  uint8: integer('uint8', 0, 255, codes('u1', 'U8', 1, Uint8Array)),
  uint16: integer('uint16', 0, 65535, codes('u2', 'U16', 2, Uint16Array)),
  uint32: integer('uint32', 0, 4294967295, codes('u4', 'U32', 4, Uint32Array)),
  uint64: wide('uint64', 0n, 2n ** 64n - 1n, codes('u8', 'U64', 8, BigUint64Array)),
  bool: {
    type: 'bool',
    binary: codes('b1', 'BOOL', 1, Uint8Array),
    allocate: (n) => new Uint8Array(n),
    fromJson(v) {
      if (v === true) return 1;
      if (v === false) return 0;
      throw WRONG_KIND;
    },
    toJson: (x) => x !== 0,
    jsonSchema: { type: 'boolean' },
    sample: (r) => (r < 0.5 ? 0 : 1),
  },
  string: {
    type: 'string',
    allocate: (n) => new Array<string>(n).fill(''),
    fromJson(v) {
      if (typeof v !== 'string') throw WRONG_KIND;
      return v;
    },
    toJson: (x) => x,
    jsonSchema: { type: 'string' },
    sample: (r) => (r < 0.5 ? 'a' : 'b'),
  },
};

export const ELEMENT_TYPES = Object.keys(TABLE) as ElementType[];

export function isElementType(name: string): name is ElementType {
  return Object.hasOwn(TABLE, name);
}

export function elementInfo(type: ElementType): ElementInfo {
  return TABLE[type];
}

/** The types a binary body can carry, by each format's code for them. */
const BINARY = ELEMENT_TYPES.flatMap((type) => (TABLE[type].binary ? [{ type, ...TABLE[type].binary }] : []));
export const byNpyCode: ReadonlyMap<string, BinaryCodes & { type: ElementType }> = new Map(
  BINARY.map((t) => [t.npy, t]),
);
export const bySafetensorsCode: ReadonlyMap<string, BinaryCodes & { type: ElementType }> = new Map(
  BINARY.map((t) => [t.safetensors, t]),
);

/** The little-endian bytes of a typed array, as a view. */
export function bytesOf(data: NumericData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Which element types convert to which without changing any value (numpy's "safe" casting, less the
 * int64/uint64 → float64 casts numpy allows, which round above 2^53). A body of the first type is
 * converted for an input of the second; any other mismatch is refused.
 */
const EXACT_CASTS: Readonly<Record<ElementType, readonly ElementType[]>> = {
  bool: ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'uint64', 'int64', 'float16', 'float32', 'float64'],
  uint8: ['uint16', 'int16', 'uint32', 'int32', 'uint64', 'int64', 'float16', 'float32', 'float64'],
  int8: ['int16', 'int32', 'int64', 'float16', 'float32', 'float64'],
  uint16: ['uint32', 'int32', 'uint64', 'int64', 'float32', 'float64'],
  int16: ['int32', 'int64', 'float32', 'float64'],
  uint32: ['uint64', 'int64', 'float64'],
  int32: ['int64', 'float64'],
  uint64: [],
  int64: [],
  float16: ['float32', 'float64'],
  float32: ['float64'],
  float64: [],
  string: [],
};

export function convertsExactly(from: ElementType, to: ElementType): boolean {
  return from === to || EXACT_CASTS[from].includes(to);
}

/** The types that convert exactly to `to`, itself first: for an error that says what to send instead. */
export function typesConvertingTo(to: ElementType): ElementType[] {
  return [to, ...ELEMENT_TYPES.filter((t) => t !== to && EXACT_CASTS[t].includes(to))];
}

/** `t` as `to` (one copy); the caller has checked convertsExactly, so neither side is string unless both are. */
export function convertTensor(t: TensorData, to: ElementType): TensorData {
  if (t.type === to) return t;
  const src = t.data as NumericData;
  const n = src.length;
  const out = TABLE[to].allocate(n);
  const read: (i: number) => number =
    t.type === 'float16' ? (i) => fromFloat16Bits(src[i] as number) : (i) => Number(src[i]);
  if (to === 'int64' || to === 'uint64') {
    const big = out as BigInt64Array | BigUint64Array;
    for (let i = 0; i < n; i++) big[i] = BigInt(read(i));
  } else if (to === 'float16') {
    // Only from bool, uint8 and int8: every one of their values is a float16, so the bits are exact.
    const half = out as Uint16Array;
    for (let i = 0; i < n; i++) half[i] = toFloat16Bits(read(i));
  } else {
    const num = out as Float64Array;
    for (let i = 0; i < n; i++) num[i] = read(i);
  }
  return { type: to, data: out, dims: t.dims };
}

/** A double → IEEE half bits, rounded to nearest even, straight from the double (no float32 step, which could round twice). */
export function toFloat16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // 65520 is halfway between 65504 and the next step: even rounds up to infinity
  if (a < 2 ** -14) return sign | roundEven(a * 2 ** 24); // subnormal (1024 rounds up into the smallest normal, whose bits are 0x400)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  let m = roundEven(a * 2 ** (10 - e)); // in [1024, 2048]; scaling by a power of two is exact
  if (m === 2048) {
    m = 1024;
    e++;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | (m - 1024);
}

export function fromFloat16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const e = (bits >> 10) & 0x1f;
  const m = bits & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

function roundEven(q: number): number {
  const f = Math.floor(q);
  const d = q - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}
