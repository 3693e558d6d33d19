/**
 * A fast path of parseMessage (message.ts) for the body nearly every tensor request is:
 * `{"data": <nested arrays of JSON numbers>}`, read straight from the bytes. On a 784-float body it
 * takes about a third of the time of TextDecoder + JSON.parse, which were half of an MLP isolate's
 * time in the benchmark's profile.
 *
 * Anything else (another key, a string, a BOM, deeper than MAX_ARRAY_DEPTH) gives undefined, and the
 * body takes the general path, which also words every error. Two forms: nested arrays for entry
 * scripts (readNumericData), and for the built-in ONNX script a typed array and its shape, with no
 * arrays in between (readNumericTensor). So this never decides what is wrong with a message.
 *
 * Every JSON number is read (any digit count, exponents), each to exactly the double JSON.parse gives,
 * or for a float32 tensor exactly the float Math.fround(JSON.parse(...)) gives:
 * - up to 15 significant digits and a power of ten up to 22: an exact integer times or divided by an
 *   exact power of ten, one IEEE rounding, the correctly rounded double (Clinger's fast path);
 * - for float32, up to 19 digits: the same arithmetic is off the true value by at most 12 roundings,
 *   so when every double within 32 units in the last place rounds to one float32 that float is the
 *   answer (json.dumps of float32 data, 17 digits each, always lands here);
 * - anything else: the number's own text through Number(), which rounds correctly, as JSON.parse does.
 */

import { slabArray } from './slab.js';

/** Well under message.ts's MAX_JSON_DEPTH (64), which the general path enforces. */
const MAX_ARRAY_DEPTH = 16;
const EXACT_DIGITS = 15; // 10^15 < 2^53: the digits as an integer are exact
const FLOAT32_DIGITS = 19;
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);
const NEAR = 2 ** -47; // 32 units in the last place of a double, relative

/** What a number is read for: exactly as JSON.parse (entry scripts' data), or a finite float64 / float32 tensor element. */
enum Target {
  Json,
  Float64,
  Float32,
}

// Character codes.
const SPACE = 0x20,
  TAB = 0x09,
  LF = 0x0a,
  CR = 0x0d;
const OPEN_BRACE = 0x7b,
  CLOSE_BRACE = 0x7d,
  OPEN_BRACKET = 0x5b,
  CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22,
  COLON = 0x3a,
  COMMA = 0x2c,
  MINUS = 0x2d,
  PLUS = 0x2b,
  DOT = 0x2e,
  ZERO = 0x30,
  NINE = 0x39,
  LOWER_E = 0x65,
  UPPER_E = 0x45;
const DATA_KEY = [QUOTE, 0x64, 0x61, 0x74, 0x61, QUOTE]; // "data"

/** Thrown inside the reader to give up on the fast path; never escapes readNumericData. */
const NOT_PLAIN = Symbol('not plain numeric data');

/** Where the numbers are read to: one buffer, reused from body to body, grown for a large one. */
let scratch = new Float64Array(4096);
/** A buffer grown past this (512 kB) is let go after its body: one huge message must not pin it for ever. */
const SCRATCH_KEEP = 1 << 16;

class Reader {
  at = 0;
  /** Rectangular reads: the length of every array at each level, and how many numbers so far. */
  readonly dims: number[] = [];
  count = 0;
  /** The level whose arrays hold the numbers, once one has been seen. */
  private leaf = -1;
  private text: Buffer | undefined;
  constructor(
    private readonly b: Uint8Array,
    private readonly target: Target,
  ) {}

  /** A number's own text, for the numbers arithmetic cannot read exactly. */
  private slow(start: number, end: number): number {
    this.text ??= Buffer.from(this.b.buffer, this.b.byteOffset, this.b.byteLength);
    return Number(this.text.toString('latin1', start, end));
  }

  /** The next non-space byte, or undefined at the end. */
  skipSpace(): number | undefined {
    const b = this.b;
    let c: number | undefined = b[this.at];
    while (c === SPACE || c === LF || c === CR || c === TAB) c = b[++this.at];
    return c; // undefined past the end
  }

  expect(code: number): void {
    if (this.skipSpace() !== code) throw NOT_PLAIN;
    this.at++;
  }

  /** Past the ',' before the next array (true) or the ']' that ends this one (false). */
  more(): boolean {
    const c = this.skipSpace();
    this.at++;
    if (c === CLOSE_BRACKET) return false;
    if (c !== COMMA) throw NOT_PLAIN;
    return true;
  }

  /** An array of arrays, or of numbers, as JSON.parse gives it (ragged rows too); a mix (never a tensor) is left to the general path. */
  nested(depth: number): unknown[] {
    if (depth > MAX_ARRAY_DEPTH) throw NOT_PLAIN;
    this.at++; // the '['
    const c = this.skipSpace();
    if (c === CLOSE_BRACKET) {
      this.at++;
      return [];
    }
    if (c !== OPEN_BRACKET) {
      const start = this.count;
      const n = this.numbers(Infinity);
      this.count = start;
      // Pushed, packed as JSON.parse's arrays are (src/packed-array.ts); a loop: Array.from(typed array) is slower.
      const row: number[] = [];
      for (let k = 0; k < n; k++) row.push(scratch[start + k]);
      return row;
    }
    const out: unknown[] = [];
    do {
      if (this.skipSpace() !== OPEN_BRACKET) throw NOT_PLAIN;
      out.push(this.nested(depth + 1));
    } while (this.more());
    return out;
  }

  /**
   * The same grammar, every array at a level as long as the first (a tensor's shape, recorded in
   * `dims`), the numbers left in `scratch`. Anything ragged is left to the general path.
   */
  rectangular(level: number, maxElements: number): void {
    if (level >= MAX_ARRAY_DEPTH) throw NOT_PLAIN;
    this.at++; // the '['
    const c = this.skipSpace();
    let length = 0;
    if (c === CLOSE_BRACKET) this.at++;
    else if (c === OPEN_BRACKET) {
      if (this.leaf >= 0 && level >= this.leaf) throw NOT_PLAIN;
      do {
        if (this.skipSpace() !== OPEN_BRACKET) throw NOT_PLAIN;
        this.rectangular(level + 1, maxElements);
        length++;
      } while (this.more());
    } else {
      if (this.leaf < 0) this.leaf = level;
      else if (this.leaf !== level) throw NOT_PLAIN;
      length = this.numbers(maxElements);
    }
    // Arrays end innermost first, so a level's length is known from its first array on.
    if (this.dims[level] === undefined) this.dims[level] = length;
    else if (this.dims[level] !== length) throw NOT_PLAIN;
  }

  /**
   * The numbers of an array, from its first up to its ']', appended to `scratch`; returns how many.
   * JSON's number grammar, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and JSON whitespace between,
   * in one loop with everything in locals: this loop is most of an MLP isolate's parsing.
   */
  numbers(maxElements: number): number {
    const b = this.b;
    const target = this.target;
    let out = scratch;
    let count = this.count;
    const first = count;
    let i = this.at;
    for (;;) {
      if (count >= maxElements) throw NOT_PLAIN;
      if (count === out.length) {
        const grown = new Float64Array(out.length * 2);
        grown.set(out);
        out = scratch = grown;
      }
      const start = i;
      // Past the end b[i] is undefined, which no comparison below accepts: the body then is not plain.
      let c: number = b[i];
      const negative = c === MINUS;
      if (negative) c = b[++i];
      // The significant digits as one integer: exact up to 15 of them (10^15 < 2^53), a few roundings off after.
      let mantissa = 0;
      let digits = 0;
      let scale = 0;
      if (c === ZERO) c = b[++i];
      else if (c > ZERO && c <= NINE) {
        do {
          mantissa = mantissa * 10 + (c - ZERO);
          digits++;
          c = b[++i];
        } while (c >= ZERO && c <= NINE);
      } else throw NOT_PLAIN;
      if (c === DOT) {
        c = b[++i];
        if (!(c >= ZERO && c <= NINE)) throw NOT_PLAIN; // also past the end, where c is undefined
        do {
          mantissa = mantissa * 10 + (c - ZERO);
          if (mantissa !== 0) digits++; // leading zeros of 0.000123 are not significant
          scale++;
          c = b[++i];
        } while (c >= ZERO && c <= NINE);
      }
      let exponent = 0;
      if (c === LOWER_E || c === UPPER_E) {
        c = b[++i];
        const down = c === MINUS;
        if (down || c === PLUS) c = b[++i];
        if (!(c >= ZERO && c <= NINE)) throw NOT_PLAIN; // also past the end, where c is undefined
        do {
          if (exponent < 1e9) exponent = exponent * 10 + (c - ZERO); // far past any double's range; Number() decides
          c = b[++i];
        } while (c >= ZERO && c <= NINE);
        if (down) exponent = -exponent;
      }
      // value = mantissa × 10^e
      const e = exponent - scale;
      let value: number;
      if (digits === 0) value = negative ? -0 : 0;
      else if (e < -22 || e > 22) value = this.slow(start, i);
      else {
        value = e >= 0 ? mantissa * POW10[e] : mantissa / POW10[-e];
        if (digits > EXACT_DIGITS) {
          // Up to 19 digits the arithmetic is within 12 roundings of the true value: take it when every
          // double that near rounds to one float32; otherwise (and for float64) the text decides.
          const f = target === Target.Float32 && digits <= FLOAT32_DIGITS ? Math.fround(value) : NaN;
          if (Number.isNaN(f) || Math.fround(value * (1 - NEAR)) !== f || Math.fround(value * (1 + NEAR)) !== f)
            value = Math.abs(this.slow(start, i));
        }
        if (negative) value = -value;
      }
      if (target === Target.Float32) {
        const f = Math.fround(value);
        if (f === Infinity || f === -Infinity) throw NOT_PLAIN; // the tensor checks word "outside the float32 range"
      } else if (value === Infinity || value === -Infinity) throw NOT_PLAIN; // beyond a double: the general path words it
      out[count++] = value;
      while (c === SPACE || c === LF || c === CR || c === TAB) c = b[++i];
      if (c === CLOSE_BRACKET) {
        this.at = i + 1;
        this.count = count;
        return count - first;
      }
      if (c !== COMMA) throw NOT_PLAIN;
      c = b[++i];
      while (c === SPACE || c === LF || c === CR || c === TAB) c = b[++i];
    }
  }

  /** `{"data": <read>}` and nothing after it. */
  body<T>(read: () => T): T | undefined {
    try {
      this.expect(OPEN_BRACE);
      this.skipSpace();
      for (const code of DATA_KEY) if (this.b[this.at++] !== code) return undefined;
      this.expect(COLON);
      if (this.skipSpace() !== OPEN_BRACKET) return undefined;
      const data = read();
      this.expect(CLOSE_BRACE);
      return this.skipSpace() === undefined ? data : undefined;
    } catch (err) {
      if (err === NOT_PLAIN) return undefined;
      throw err;
    }
  }
}

/** The first `count` numbers read, as a view on the slab. */
function fromScratch(
  Typed: Float32ArrayConstructor | Float64ArrayConstructor,
  count: number,
): Float32Array | Float64Array {
  const data = slabArray(Typed as Float64ArrayConstructor, count);
  data.set(scratch.subarray(0, count));
  return data;
}

/** The value under "data", or undefined when the body is not exactly `{"data": <arrays of numbers>}`. */
export function readNumericData(body: Uint8Array): unknown[] | undefined {
  const r = new Reader(body, Target.Json);
  const data = r.body(() => r.nested(1));
  if (scratch.length > SCRATCH_KEEP) scratch = new Float64Array(4096);
  return data;
}

/**
 * The data of a body that is exactly `{"data": <rectangular arrays of numbers>}`, read straight into
 * a typed array of the given type, with its shape; undefined for anything else (ragged, empty, over
 * maxElements, a value outside the type's range): the general path words those errors.
 */
export function readNumericTensor(
  body: Uint8Array,
  type: 'float32' | 'float64',
  maxElements: number,
): { dims: number[]; data: Float32Array | Float64Array } | undefined {
  const r = new Reader(body, type === 'float32' ? Target.Float32 : Target.Float64);
  const read = r.body(() => {
    r.rectangular(0, maxElements);
    return true;
  });
  const { dims, count } = r;
  const tensor =
    read && count > 0 && !dims.includes(0)
      ? { dims, data: fromScratch(type === 'float64' ? Float64Array : Float32Array, count) }
      : undefined;
  if (scratch.length > SCRATCH_KEEP) scratch = new Float64Array(4096);
  return tensor;
}
