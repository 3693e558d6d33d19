/**
 * NumPy's .npy format (application/x-npy), read and written without NumPy: one array, its dtype and
 * shape in a small text header. The header is untrusted: it is parsed by a bounded reader (never
 * eval'd, at most NPY_MAX_HEADER_BYTES, as numpy itself caps it), its element count is checked against
 * the cap and its byte count against the body before anything is allocated, and the data is a view on
 * the body where its alignment allows. Big-endian and Fortran-order arrays are converted (one copy).
 * Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 */
import { clip, ScoringError } from '../errors.js';
import {
  byNpyCode,
  bytesOf,
  elementInfo,
  type BinaryCodes,
  type ElementType,
  type NumericData,
  type TensorData,
} from '../onnx/element-types.js';
import { typedData } from './slab.js';
import { elementCount } from '../onnx/tensors.js';

export const NPY_CONTENT_TYPE = 'application/x-npy';
/** numpy.lib.format's own default max_header_size. */
export const NPY_MAX_HEADER_BYTES = 10_000;
const MAGIC = Uint8Array.of(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59); // \x93NUMPY
const MAX_RANK = 32; // numpy's own NPY_MAXDIMS (64 since 2.0); a model's rank is far below either

export interface NpyLimits {
  maxTensorElements: number;
}

const bad = (what: string): ScoringError => new ScoringError('BAD_BINARY', `.npy body ${what}`);

/** What a body's bytes before its data say: the same for every body a producer sends of one dtype and shape. */
interface NpyLayout {
  info: BinaryCodes & { type: ElementType };
  descr: string;
  dims: readonly number[];
  count: number;
  dataOffset: number;
  bigEndian: boolean;
  fortranOrder: boolean;
}

/** The array in an .npy body; `what` names the body in errors (an input, a file in a request). */
export function readNpy(body: Uint8Array, limits: NpyLimits): TensorData<NumericData> {
  const { info, descr, dims, count, dataOffset, bigEndian, fortranOrder } = layoutOf(body, limits);
  const dataBytes = count * info.bytes;
  const got = body.byteLength - dataOffset;
  if (got < dataBytes)
    throw bad(
      `is truncated: shape (${dims.join(', ')}) of ${descr} needs ${dataBytes} data bytes, the body has ${got}`,
    );
  if (got > dataBytes)
    throw bad(
      `has ${got - dataBytes} bytes after its data (shape (${dims.join(', ')}) of ${descr} is ${dataBytes} bytes)`,
    );
  const data =
    bigEndian || fortranOrder
      ? typedData(info, toLittleCOrder(body.subarray(dataOffset), info, dims, bigEndian, fortranOrder), count)
      : typedData(info, body, count, dataOffset);
  return { type: info.type, data, dims: dims.slice() };
}

/**
 * The last layout read, with the bytes it was read from: a body that starts with the same bytes up to its
 * data has the same layout, checked by comparing them rather than parsing the header again.
 */
let last: { prefix: Uint8Array; maxElements: number; layout: NpyLayout } | undefined;

function layoutOf(body: Uint8Array, limits: NpyLimits): NpyLayout {
  if (last !== undefined && last.maxElements === limits.maxTensorElements && startsWith(body, last.prefix))
    return last.layout;
  if (body.byteLength < 10 || !startsWith(body, MAGIC)) throw bad('does not start with the NumPy magic "\\x93NUMPY"');
  const major = body[6];
  if (major < 1 || major > 3) throw bad(`has format version ${major}.${body[7]}; versions 1.0 to 3.0 are read`);
  const lenBytes = major === 1 ? 2 : 4;
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const headerLength =
    lenBytes === 2 ? dv.getUint16(8, true) : body.byteLength >= 12 ? dv.getUint32(8, true) : Infinity;
  if (headerLength > NPY_MAX_HEADER_BYTES)
    throw bad(`has a ${headerLength}-byte header, over the ${NPY_MAX_HEADER_BYTES}-byte limit`);
  const dataOffset = 8 + lenBytes + headerLength;
  if (dataOffset > body.byteLength)
    throw bad(`is truncated: its header needs ${dataOffset} bytes, the body has ${body.byteLength}`);
  const header = headerOf(latin1(body.subarray(8 + lenBytes, dataOffset)));

  const order = header.descr[0];
  const info = byNpyCode.get(header.descr.slice(1));
  if (!info || !'<>|='.includes(order)) {
    const known = [...byNpyCode.keys()].map((k) => `<${k}`).join(', ');
    throw bad(`has dtype '${clip(header.descr, 80)}', which is not read; send one of ${known}`);
  }
  const dims = header.shape;
  const count = elementCount(dims, limits.maxTensorElements);
  if (count > limits.maxTensorElements) {
    throw new ScoringError(
      'TOO_MANY_ELEMENTS',
      `.npy body has shape (${dims.join(', ')}), over the cap of ${limits.maxTensorElements} elements (MAX_TENSOR_ELEMENTS)`,
    );
  }
  const layout: NpyLayout = {
    info,
    descr: header.descr,
    dims,
    count,
    dataOffset,
    bigEndian: order === '>' && info.bytes > 1,
    fortranOrder: header.fortranOrder,
  };
  last = { prefix: body.slice(0, dataOffset), maxElements: limits.maxTensorElements, layout };
  return layout;
}

function startsWith(body: Uint8Array, prefix: Uint8Array): boolean {
  const n = prefix.byteLength;
  return body.byteLength >= n && Buffer.compare(new Uint8Array(body.buffer, body.byteOffset, n), prefix) === 0;
}

/** The .npy bytes of a tensor: version 1.0, little-endian, C order, the header padded to 64 bytes as numpy pads it. */
export function writeNpy(tensor: TensorData, what = 'the tensor'): Uint8Array {
  const info = elementInfo(tensor.type).binary;
  if (!info)
    throw new ScoringError('TYPE', `${what} has ${tensor.type} elements, which a .npy cannot carry; ask for JSON`);
  const shape = tensor.dims.length === 1 ? `(${tensor.dims[0]},)` : `(${tensor.dims.join(', ')})`;
  const dict = `{'descr': '${info.bytes === 1 ? '|' : '<'}${info.npy}', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = 10 + dict.length + 1;
  const headerLength = dict.length + 1 + ((64 - (unpadded % 64)) % 64);
  const data = bytesOf(tensor.data as NumericData);
  const out = new Uint8Array(10 + headerLength + data.byteLength);
  out.set(MAGIC);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, headerLength, true);
  const text = `${dict.padEnd(headerLength - 1, ' ')}\n`;
  for (let i = 0; i < text.length; i++) out[10 + i] = text.charCodeAt(i);
  out.set(data, 10 + headerLength);
  return out;
}

interface NpyHeader {
  descr: string;
  fortranOrder: boolean;
  shape: number[];
}

/**
 * The header is a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }.
 * Read with a strict little tokenizer over at most NPY_MAX_HEADER_BYTES characters: exactly the
 * three keys, strings, True/False and a tuple of non-negative integers.
 */
function parseHeader(text: string): NpyHeader {
  let at = 0;
  const fail = (why: string): never => {
    throw bad(
      `has a header that is not a NumPy header (${why} at character ${at}): ${clip(JSON.stringify(text.trim()), 80)}`,
    );
  };
  const skip = () => {
    while (at < text.length && ' \t\n\r'.includes(text[at])) at++;
  };
  const expect = (c: string) => {
    skip();
    if (text[at] !== c) fail(`expected '${c}'`);
    at++;
  };
  const string = (): string => {
    skip();
    const q = text[at];
    if (q !== "'" && q !== '"') fail('expected a string');
    const end = text.indexOf(q, at + 1);
    if (end < 0) fail('unterminated string');
    const s = text.slice(at + 1, end);
    at = end + 1;
    return s;
  };
  const bool = (): boolean => {
    skip();
    if (text.startsWith('True', at)) return ((at += 4), true);
    if (text.startsWith('False', at)) return ((at += 5), false);
    return fail('expected True or False');
  };
  const tuple = (): number[] => {
    expect('(');
    const dims: number[] = [];
    for (;;) {
      skip();
      if (text[at] === ')') break;
      const start = at;
      while (at < text.length && text[at] >= '0' && text[at] <= '9' && at - start < 16) at++;
      if (at === start) fail('expected a dimension');
      const d = Number(text.slice(start, at));
      if (!Number.isSafeInteger(d)) fail('a dimension too large');
      dims.push(d);
      if (dims.length > MAX_RANK) fail(`more than ${MAX_RANK} dimensions`);
      skip();
      if (text[at] === 'L') at++; // Python 2's long suffix, still in old files
      skip();
      if (text[at] === ',') at++;
      else if (text[at] !== ')') fail("expected ',' or ')'");
    }
    at++;
    return dims;
  };

  const seen: Partial<NpyHeader> = {};
  expect('{');
  for (;;) {
    skip();
    if (text[at] === '}') break;
    const key = string();
    expect(':');
    if (key === 'descr' && seen.descr === undefined) seen.descr = string();
    else if (key === 'fortran_order' && seen.fortranOrder === undefined) seen.fortranOrder = bool();
    else if (key === 'shape' && seen.shape === undefined) seen.shape = tuple();
    else fail(`unexpected key '${clip(key, 80)}'`);
    skip();
    if (text[at] === ',') at++;
    else if (text[at] !== '}') fail("expected ',' or '}'");
  }
  at++;
  skip();
  if (at !== text.length) fail('text after the dict');
  if (seen.descr === undefined || seen.fortranOrder === undefined || seen.shape === undefined) {
    fail("missing one of 'descr', 'fortran_order', 'shape'");
  }
  return seen as NpyHeader;
}

/** One copy: bytes swapped to little-endian, elements moved from Fortran to C order. */
function toLittleCOrder(
  raw: Uint8Array,
  info: BinaryCodes,
  dims: readonly number[],
  swap: boolean,
  fortran: boolean,
): Uint8Array {
  const size = info.bytes;
  const count = raw.byteLength / size;
  const out = new Uint8Array(raw.byteLength);
  // Fortran strides (in elements) of each axis; walking C order, keep the Fortran offset in step.
  const rank = dims.length;
  const fStride = new Array<number>(rank);
  for (let a = 0, s = 1; a < rank; a++) (fStride[a] = s), (s *= dims[a]);
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let c = 0; c < count; c++) {
    const from = (fortran ? src : c) * size;
    const to = c * size;
    for (let b = 0; b < size; b++) out[to + b] = raw[from + (swap ? size - 1 - b : b)];
    if (!fortran) continue;
    for (let a = rank - 1; a >= 0; a--) {
      if (++idx[a] < dims[a]) {
        src += fStride[a];
        break;
      }
      src -= fStride[a] * (dims[a] - 1);
      idx[a] = 0;
    }
  }
  return out;
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/**
 * A producer sends one dtype and shape after another, so the same header text comes again and again:
 * parsed once (parsing was most of the time to read a 3 kB .npy), kept for the last few texts seen.
 * Only headers that parse are kept; the shape is copied out by the caller.
 */
const headers = new Map<string, NpyHeader>();
const HEADERS_KEPT = 64;
function headerOf(text: string): NpyHeader {
  let header = headers.get(text);
  if (header === undefined) {
    header = parseHeader(text);
    if (headers.size >= HEADERS_KEPT) headers.delete(headers.keys().next().value as string);
    headers.set(text, header);
  }
  return header;
}
