/**
 * A fast path of parseMessage (message.ts) for the body nearly every tensor request is:
 * `{"data": <nested arrays of plain decimal numbers>}`, read straight from the bytes. On a 784-float
 * body it takes about a third of the time of TextDecoder + JSON.parse, which were half of an MLP
 * isolate's time in the benchmark's profile.
 *
 * Anything else (another key, a string, an exponent, more than 15 significant digits, a BOM, deeper
 * than MAX_ARRAY_DEPTH) gives undefined, and the body takes the general path, which also words every
 * error. So this never decides what is wrong with a message, and what it returns is exactly what
 * JSON.parse returns: a decimal with at most 15 digits and at most 22 after the point is an exact
 * integer divided by an exact power of ten, which IEEE division rounds correctly (Clinger's fast path),
 * as JSON.parse does.
 */

/** Well under message.ts's MAX_JSON_DEPTH (64), which the general path enforces. */
const MAX_ARRAY_DEPTH = 16;
const MAX_DIGITS = 15;
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);

// Character codes.
const SPACE = 0x20, TAB = 0x09, LF = 0x0a, CR = 0x0d;
const OPEN_BRACE = 0x7b, CLOSE_BRACE = 0x7d, OPEN_BRACKET = 0x5b, CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22, COLON = 0x3a, COMMA = 0x2c, MINUS = 0x2d, DOT = 0x2e, ZERO = 0x30, NINE = 0x39;
const DATA_KEY = [QUOTE, 0x64, 0x61, 0x74, 0x61, QUOTE]; // "data"

/** Thrown inside the reader to give up on the fast path; never escapes readNumericData. */
const NOT_PLAIN = Symbol('not plain numeric data');

class Reader {
  at = 0;
  constructor(private readonly b: Uint8Array) {}

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

  /** An array of arrays, or of numbers; a mix (never a tensor) is left to the general path. */
  array(depth: number): unknown[] {
    if (depth > MAX_ARRAY_DEPTH) throw NOT_PLAIN;
    this.at++; // the '['
    const c = this.skipSpace();
    if (c === CLOSE_BRACKET) {
      this.at++;
      return [];
    }
    if (c !== OPEN_BRACKET) return this.numbers();
    const out: unknown[] = [];
    for (;;) {
      out.push(this.array(depth + 1));
      const next = this.skipSpace();
      this.at++;
      if (next === CLOSE_BRACKET) return out;
      if (next !== COMMA || this.skipSpace() !== OPEN_BRACKET) throw NOT_PLAIN;
    }
  }

  /**
   * The rest of an array of numbers, up to its ']', in one loop with the index in a local: JSON's
   * number grammar without an exponent, -?(0|[1-9][0-9]*)(\.[0-9]+)?, and JSON whitespace between.
   */
  numbers(): number[] {
    const b = this.b;
    const out: number[] = [];
    let i = this.at;
    for (;;) {
      let c: number | undefined = b[i];
      const negative = c === MINUS;
      if (negative) c = b[++i];
      let mantissa = 0;
      let digits = 0;
      let scale = 0;
      if (c === ZERO) c = b[++i];
      else if (c !== undefined && c > ZERO && c <= NINE) {
        do {
          mantissa = mantissa * 10 + (c - ZERO);
          digits++;
          c = b[++i];
        } while (c !== undefined && c >= ZERO && c <= NINE);
      } else throw NOT_PLAIN;
      if (c === DOT) {
        c = b[++i];
        if (c === undefined || c < ZERO || c > NINE) throw NOT_PLAIN;
        do {
          mantissa = mantissa * 10 + (c - ZERO);
          digits++;
          scale++;
          c = b[++i];
        } while (c !== undefined && c >= ZERO && c <= NINE);
      }
      // An exponent, or too many digits for exact arithmetic: JSON.parse decides.
      if (digits > MAX_DIGITS || scale >= POW10.length) throw NOT_PLAIN;
      const value = scale === 0 ? mantissa : mantissa / POW10[scale];
      out.push(negative ? -value : value);
      while (c === SPACE || c === LF || c === CR || c === TAB) c = b[++i];
      if (c === CLOSE_BRACKET) {
        this.at = i + 1;
        return out;
      }
      if (c !== COMMA) throw NOT_PLAIN; // an exponent lands here too
      c = b[++i];
      while (c === SPACE || c === LF || c === CR || c === TAB) c = b[++i];
    }
  }
}

/** The value under "data", or undefined when the body is not exactly `{"data": <arrays of numbers>}`. */
export function readNumericData(body: Uint8Array): unknown[] | undefined {
  const r = new Reader(body);
  try {
    r.expect(OPEN_BRACE);
    r.skipSpace();
    for (const code of DATA_KEY) if (body[r.at++] !== code) return undefined;
    r.expect(COLON);
    if (r.skipSpace() !== OPEN_BRACKET) return undefined;
    const data = r.array(1);
    r.expect(CLOSE_BRACE);
    return r.skipSpace() === undefined ? data : undefined;
  } catch (err) {
    if (err === NOT_PLAIN) return undefined;
    throw err;
  }
}
