/**
 * A batch's answers as JSON, written straight from the output tensors as UTF-8 into one buffer: the
 * same text as JSON.stringify of splitOutputs' rows with withZipMaps applied (tensors.ts), without the
 * arrays, objects and strings in between, which were most of the output encoding's cost and its garbage.
 * Only for what it can write exactly: numeric tensors whose every value JSON writes as that number.
 * Anything else (strings, booleans, float16, NaN and infinities, which JSON writes as null, a 64-bit
 * integer past 2^53, which the general path writes as a string, a ZipMap output not of rank 2) gives
 * undefined, and the caller takes the general path for the batch.
 */
import type { ZipMapLabels } from './graph-rewrite.js';
import type { TensorData } from './tensors.js';
import { packedMap } from '../packed-array.js';

type Plain = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;
type Int64s = BigInt64Array | BigUint64Array;

const FLOATS = new Set(['float32', 'float64']);
const INTEGERS = new Set(['int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32']);
const INT64S = new Set(['int64', 'uint64']);
const SAFE = 9007199254740991n;
const COMMA = 0x2c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const utf8 = new TextEncoder();
/** Text up to this long is copied by a loop, not by Buffer's write (instruction counts of both, bench/stages.ts --stage output). */
const SHORT_TEXT = 32;

/** A batch's answers one after another in one buffer, grown as needed. */
class Sink {
  bytes = Buffer.allocUnsafe(4096);
  at = 0;

  /** Room for `n` more bytes at `at`. */
  room(n: number): Buffer {
    if (this.at + n > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, this.at + n));
      this.bytes.copy(grown, 0, 0, this.at);
      this.bytes = grown;
    }
    return this.bytes;
  }

  byte(c: number): void {
    this.room(1)[this.at++] = c;
  }

  raw(b: Uint8Array): void {
    this.room(b.length).set(b, this.at);
    this.at += b.length;
  }

  /** Numbers' text: ASCII (digits, signs, points, exponents, commas), so one byte a character. */
  ascii(text: string): void {
    const b = this.room(text.length);
    // Buffer's write costs a native call: below a few numbers, a loop here is cheaper.
    if (text.length > SHORT_TEXT) {
      this.at += b.write(text, this.at, 'latin1');
      return;
    }
    let at = this.at;
    for (let i = 0; i < text.length; i++) b[at++] = text.charCodeAt(i);
    this.at = at;
  }
}

/**
 * One output's numbers as JSON writes them (a typed array's join writes each number as JSON does),
 * handed out `n` at a time in order as the messages take them: each run joined on its own, so no text
 * is scanned for where a message's numbers end.
 */
class NumberText {
  private next = 0;

  constructor(private readonly data: Plain | Int64s) {}

  /** The next `n` numbers (n ≥ 1) with the commas between them. */
  copy(sink: Sink, n: number): void {
    sink.ascii(this.data.subarray(this.next, this.next + n).join(','));
    this.next += n;
  }
}

export class AnswerWriter {
  /** The outputs' keys as JSON writes them (UTF-8, quoted, colon after), in the order it writes them (V8 puts integer-like keys first, ascending). */
  private readonly keys: Array<{ name: string; key: Uint8Array }>;
  /** Per ZipMap output: its labels as JSON keys in written order (`"label":`), each with the column it takes. */
  private readonly zip = new Map<string, Array<{ key: Uint8Array; column: number }>>();

  constructor(
    private readonly names: readonly string[],
    zipMaps: readonly ZipMapLabels[],
  ) {
    this.keys = writtenOrder(names).map(({ key, index }) => ({ name: names[index], key }));
    // As withZipMaps applies them (tensors.ts): a model of one output gets the first ZipMap's labels.
    const applied =
      names.length === 1 && zipMaps.length > 0 ? [{ name: names[0], labels: zipMaps[0].labels }] : zipMaps;
    for (const z of applied) {
      this.zip.set(
        z.name,
        writtenOrder(z.labels).map(({ key, index }) => ({ key, column: index })),
      );
    }
  }

  /** Each message's answer (its `rowCounts[k]` rows of every output) as UTF-8 JSON, views on one buffer; or undefined: see the module's comment. */
  write(outputs: Record<string, TensorData>, rowCounts: readonly number[]): Uint8Array[] | undefined {
    const total = rowCounts.reduce((a, b) => a + b, 0);
    const single = rowCounts.length === 1;
    const texts = new Map<string, NumberText>();
    for (const name of this.names) {
      const t = Object.hasOwn(outputs, name) ? outputs[name] : undefined;
      if (!t || !writable(t)) return undefined;
      const zip = this.zip.get(name);
      // A label past a row's width reads undefined there, which JSON.stringify leaves out: the general path.
      if (zip && (t.dims.length !== 2 || zip.some((z) => z.column >= t.dims[1]))) return undefined;
      // Several messages split the batch axis; one message gets the output whole (maybe without a batch axis).
      if (!single && (t.dims.length === 0 || t.dims[0] !== total)) return undefined; // the general path says what is wrong
      if (!zip && t.dims.length > 0 && t.data.length > 0) texts.set(name, new NumberText(t.data as Plain | Int64s));
    }
    const sink = new Sink();
    // Each output's block shape for one message, its first axis set per message: no array per message.
    const shapes = new Map<string, number[]>();
    for (const name of this.names)
      shapes.set(name, single ? outputs[name].dims : packedMap(outputs[name].dims, (d) => d));
    // Pushed, so packed (src/packed-array.ts).
    const ends: number[] = [];
    const many = this.names.length > 1;
    let row = 0;
    for (let m = 0; m < rowCounts.length; m++) {
      const n = rowCounts[m];
      if (many) sink.byte(OPEN_BRACE);
      for (let k = 0; k < (many ? this.keys.length : 1); k++) {
        const name = many ? this.keys[k].name : this.names[0];
        if (many) {
          if (k > 0) sink.byte(COMMA);
          sink.raw(this.keys[k].key);
        }
        const t = outputs[name];
        const zip = this.zip.get(name);
        if (zip) zipRows(sink, t, zip, single ? 0 : row, single ? t.dims[0] : n);
        else if (t.dims.length === 0) sink.ascii(String((t.data as Plain | Int64s)[0]));
        else {
          const shape = shapes.get(name)!;
          if (!single) shape[0] = n;
          nested(sink, texts.get(name), shape, 0);
        }
      }
      if (many) sink.byte(CLOSE_BRACE);
      ends.push(sink.at);
      row += n;
    }
    const out: Uint8Array[] = [];
    for (let m = 0, start = 0; m < rowCounts.length; start = ends[m], m++)
      out.push(sink.bytes.subarray(start, ends[m]));
    return out;
  }
}

/**
 * Keys in the order JSON.stringify writes an object made from them by Object.fromEntries (as
 * splitOutputs and entry.ts make theirs), each as its JSON text and a colon, in UTF-8, with the index
 * of the entry whose value it shows (a key given twice shows the last one's).
 */
function writtenOrder(keys: readonly string[]): Array<{ key: Uint8Array; index: number }> {
  const probe = Object.fromEntries(keys.map((k, i) => [k, i])) as Record<string, number>;
  return Object.keys(probe).map((k) => ({ key: utf8.encode(`${JSON.stringify(k)}:`), index: probe[k] }));
}

/** Whether every value is one JSON writes as the number a typed array's join writes. */
function writable(t: TensorData): boolean {
  if (INTEGERS.has(t.type)) return true;
  if (FLOATS.has(t.type)) {
    const d = t.data as Float32Array | Float64Array;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) return false;
    return true;
  }
  if (INT64S.has(t.type)) {
    const d = t.data as Int64s;
    for (let i = 0; i < d.length; i++) if (d[i] > SAFE || d[i] < -SAFE) return false;
    return true;
  }
  return false;
}

/** The nested arrays of a block of shape `dims`, its numbers the next ones of `numbers`. */
function nested(sink: Sink, numbers: NumberText | undefined, dims: readonly number[], level: number): void {
  const n = dims[level];
  sink.byte(OPEN_BRACKET);
  for (let i = 0; i < n; i++) {
    if (i > 0) sink.byte(COMMA);
    if (level === dims.length - 1) {
      numbers!.copy(sink, n);
      break;
    }
    nested(sink, numbers, dims, level + 1);
  }
  sink.byte(CLOSE_BRACKET);
}

/** `n` rows of a rank-2 ZipMap output from `row`: one `{label: probability}` object each. */
function zipRows(
  sink: Sink,
  t: TensorData,
  zip: ReadonlyArray<{ key: Uint8Array; column: number }>,
  row: number,
  n: number,
): void {
  const data = t.data as Plain | Int64s;
  const width = t.dims[1];
  sink.byte(OPEN_BRACKET);
  for (let r = 0; r < n; r++) {
    const at = (row + r) * width;
    sink.byte(r === 0 ? OPEN_BRACE : COMMA);
    if (r > 0) sink.byte(OPEN_BRACE);
    for (let j = 0; j < zip.length; j++) {
      if (j > 0) sink.byte(COMMA);
      sink.raw(zip[j].key);
      sink.ascii(String(data[at + zip[j].column]));
    }
    sink.byte(CLOSE_BRACE);
  }
  sink.byte(CLOSE_BRACKET);
}
