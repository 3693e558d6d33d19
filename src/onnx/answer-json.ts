/**
 * A batch's answers as JSON text, written straight from the output tensors: the same text as
 * JSON.stringify of splitOutputs' rows with withZipMaps applied (tensors.ts), without the arrays and
 * objects in between, which were most of the output encoding's cost and its garbage. Only for what it
 * can write exactly: numeric tensors whose every value JSON writes as that number. Anything else
 * (strings, booleans, float16, NaN and infinities, which JSON writes as null, a 64-bit integer past
 * 2^53, which the general path writes as a string, a ZipMap output not of rank 2) gives undefined, and
 * the caller takes the general path for the batch.
 */
import type { ZipMapLabels } from './graph-rewrite.js';
import type { TensorData } from './tensors.js';

type Numbers =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array;
type Int64s = BigInt64Array | BigUint64Array;

const FLOATS = new Set(['float32', 'float64']);
const INTEGERS = new Set(['int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32']);
const INT64S = new Set(['int64', 'uint64']);
const SAFE = 9007199254740991n;

export class AnswerWriter {
  /** The outputs' keys as JSON writes them, in the order it writes them (V8 puts integer-like keys first, ascending). */
  private readonly keys: Array<{ name: string; key: string }>;
  /** Per ZipMap output: its labels as JSON keys in written order, each with the column it takes. */
  private readonly zip = new Map<string, Array<{ key: string; column: number }>>();

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

  /** Each message's answer text (its `rowCounts[k]` rows of every output), or undefined: see the module's comment. */
  write(outputs: Record<string, TensorData>, rowCounts: readonly number[]): string[] | undefined {
    const total = rowCounts.reduce((a, b) => a + b, 0);
    const perOutput = new Map<string, string[]>();
    for (const name of this.names) {
      const t = Object.hasOwn(outputs, name) ? outputs[name] : undefined;
      if (!t || !writable(t)) return undefined;
      const zip = this.zip.get(name);
      // A label past a row's width reads undefined there, which JSON.stringify leaves out: the general path.
      if (zip && (t.dims.length !== 2 || zip.some((z) => z.column >= t.dims[1]))) return undefined;
      // One message: the output whole, as sliceOutputs gives it (an unbatched run, maybe without a batch axis).
      if (rowCounts.length === 1) {
        perOutput.set(name, [zip ? zipRows(t, zip, 0, t.dims[0]) : wholeText(t)]);
        continue;
      }
      if (t.dims.length === 0 || t.dims[0] !== total) return undefined; // the general path says what is wrong
      const texts: string[] = new Array(rowCounts.length);
      const rowSize = t.dims.slice(1).reduce((a, b) => a * b, 1);
      let row = 0;
      for (let m = 0; m < rowCounts.length; m++) {
        const n = rowCounts[m];
        texts[m] = zip ? zipRows(t, zip, row, n) : sliceText(t, row * rowSize, n);
        row += n;
      }
      perOutput.set(name, texts);
    }
    if (this.names.length === 1) return perOutput.get(this.names[0]);
    return rowCounts.map((_, m) => {
      let text = '{';
      for (let i = 0; i < this.keys.length; i++) {
        const { name, key } = this.keys[i];
        text += `${i === 0 ? '' : ','}${key}:${perOutput.get(name)![m]}`;
      }
      return `${text}}`;
    });
  }
}

/**
 * Keys in the order JSON.stringify writes an object made from them by Object.fromEntries (as
 * splitOutputs and entry.ts make theirs), each with the index of the entry whose value it shows
 * (a key given twice shows the last one's).
 */
function writtenOrder(keys: readonly string[]): Array<{ key: string; index: number }> {
  const probe = Object.fromEntries(keys.map((k, i) => [k, i])) as Record<string, number>;
  return Object.keys(probe).map((k) => ({ key: JSON.stringify(k), index: probe[k] }));
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

/** Rows [from row, n rows) of a tensor, as the nested arrays of a slice of dims [n, ...rest]. */
function sliceText(t: TensorData, at: number, n: number): string {
  return nestedOf(t.data as Numbers | Int64s, [n, ...t.dims.slice(1)], 0, at);
}

/** The whole tensor: a scalar for rank 0. */
function wholeText(t: TensorData): string {
  const data = t.data as Numbers | Int64s;
  return t.dims.length === 0 ? String(data[0]) : nestedOf(data, t.dims, 0, 0);
}

function nestedOf(data: Numbers | Int64s, dims: readonly number[], level: number, at: number): string {
  const n = dims[level];
  if (level === dims.length - 1) return `[${data.subarray(at, at + n).join(',')}]`;
  let stride = 1;
  for (let i = level + 1; i < dims.length; i++) stride *= dims[i];
  let text = '[';
  for (let i = 0; i < n; i++) text += (i === 0 ? '' : ',') + nestedOf(data, dims, level + 1, at + i * stride);
  return `${text}]`;
}

/** `n` rows of a rank-2 ZipMap output from `row`: one `{label: probability}` object each. */
function zipRows(t: TensorData, zip: ReadonlyArray<{ key: string; column: number }>, row: number, n: number): string {
  const data = t.data as Numbers | Int64s;
  const width = t.dims[1];
  let text = '[';
  for (let r = 0; r < n; r++) {
    const at = (row + r) * width;
    text += r === 0 ? '{' : ',{';
    for (let j = 0; j < zip.length; j++) {
      const { key, column } = zip[j];
      text += `${j === 0 ? '' : ','}${key}:${String(data[at + column])}`;
    }
    text += '}';
  }
  return `${text}]`;
}
