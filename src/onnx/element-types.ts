/**
 * The one table of ONNX tensor element types: the names onnxruntime-node uses, the array each is held
 * in, and how one element is read from JSON and written back. Everything that turns values into
 * tensors (JSON here, binary payloads elsewhere) asks this table, so a type is added in one place.
 *
 * Choices a user can see:
 * - float16 is held as its IEEE half bits in a Uint16Array (what onnxruntime-node takes and returns on
 *   Node 20), read from and written as plain JSON numbers, rounded to nearest even.
 * - int64 and uint64 come as JSON integers up to 2^53-1 in magnitude, or as JSON strings of decimal
 *   digits for the full 64-bit range: JSON.parse has already rounded a bigger number, so a number
 *   beyond 2^53-1 is refused rather than scored as a neighbour. Answers are numbers while exact, and
 *   decimal strings beyond 2^53-1, never a rounded number.
 * - bool is true/false (held as 0/1 in a Uint8Array); string is a JSON string.
 */

export type ElementType =
  | 'float32' | 'float64' | 'float16'
  | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64'
  | 'bool' | 'string';

export type TypedData =
  | Float32Array | Float64Array | Uint16Array // float16 as bits
  | Int8Array | Uint8Array | Int16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array // bool as Uint8Array
  | string[];

export type Element = number | bigint | string;

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
}

const WRONG_KIND = new ElementProblem();

function integer(type: ElementType, min: number, max: number, make: (n: number) => TypedData): ElementInfo {
  const range = `outside the ${type} range (${min} to ${max})`;
  return {
    type,
    allocate: make,
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

function wide(type: 'int64' | 'uint64', min: bigint, max: bigint, make: (n: number) => TypedData): ElementInfo {
  const range = `outside the ${type} range (${min} to ${max})`;
  return {
    type,
    allocate: make,
    fromJson(v) {
      if (typeof v === 'number') {
        if (!Number.isInteger(v)) throw new ElementProblem('not an integer');
        // Beyond 2^53 JSON.parse has already rounded the value, so we refuse rather than send a wrong id.
        if (!Number.isSafeInteger(v)) throw new ElementProblem(`not a safe integer (|n| > 2^53-1); send larger ${type} values as JSON strings of digits, e.g. "9007199254740993"`);
        if (v < 0 && min === 0n) throw new ElementProblem(range);
        return BigInt(v);
      }
      if (typeof v === 'string') {
        if (!/^-?[0-9]{1,20}$/.test(v)) throw new ElementProblem(`a string that is not a decimal integer: "${v.length > 24 ? `${v.slice(0, 21)}...` : v}"`);
        const n = BigInt(v);
        if (n < min || n > max) throw new ElementProblem(range);
        return n;
      }
      throw WRONG_KIND;
    },
    toJson: (x) => (x as bigint >= -9007199254740991n && x as bigint <= 9007199254740991n ? Number(x) : String(x)),
    jsonSchema: { type: ['integer', 'string'], pattern: '^-?[0-9]+$', description: 'a JSON integer up to 2^53-1 in magnitude, or a decimal string for any value' },
    sample: (r) => (r < 0.5 ? 0n : 1n),
  };
}

function float(type: 'float32' | 'float64', make: (n: number) => TypedData): ElementInfo {
  const round = type === 'float32' ? Math.fround : (x: number) => x;
  const range = new ElementProblem(`outside the ${type} range`);
  return {
    type,
    allocate: make,
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

const TABLE: Record<ElementType, ElementInfo> = {
  float32: float('float32', (n) => new Float32Array(n)),
  float64: float('float64', (n) => new Float64Array(n)),
  float16: {
    type: 'float16',
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
  int8: integer('int8', -128, 127, (n) => new Int8Array(n)),
  uint8: integer('uint8', 0, 255, (n) => new Uint8Array(n)),
  int16: integer('int16', -32768, 32767, (n) => new Int16Array(n)),
  uint16: integer('uint16', 0, 65535, (n) => new Uint16Array(n)),
  int32: integer('int32', -2147483648, 2147483647, (n) => new Int32Array(n)),
  uint32: integer('uint32', 0, 4294967295, (n) => new Uint32Array(n)),
  int64: wide('int64', -(2n ** 63n), 2n ** 63n - 1n, (n) => new BigInt64Array(n)),
  uint64: wide('uint64', 0n, 2n ** 64n - 1n, (n) => new BigUint64Array(n)),
  bool: {
    type: 'bool',
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
