/**
 * safetensors (application/x-safetensors): several named tensors in one body, for multi-input models.
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 * {"<name>": {"dtype": "F32", "shape": [1, 4], "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the tensors' bytes (little-endian, C order), offsets relative to the end of the header.
 * The header is untrusted: its length is capped before it is decoded, every entry's element count is
 * checked against the cap and its byte range against the body before anything is allocated, and each
 * tensor is a view on the body where its alignment allows.
 * Spec: https://github.com/huggingface/safetensors#format
 */
import { clip, ScoringError } from '../errors.js';
import { bySafetensorsCode, bytesOf, elementInfo, type NumericData, type TensorData } from '../onnx/element-types.js';
import { typedData } from './slab.js';
import { elementCount } from '../onnx/tensors.js';

export const SAFETENSORS_CONTENT_TYPE = 'application/x-safetensors';
/** Room for thousands of tensors' entries; the Rust reference caps at 100 MB, far more than an input needs. */
export const SAFETENSORS_MAX_HEADER_BYTES = 1 << 20;

export interface SafetensorsLimits {
  maxTensorElements: number;
}

const bad = (what: string): ScoringError => new ScoringError('BAD_BINARY', `safetensors body ${what}`);
const decoder = new TextDecoder('utf-8', { fatal: true });

/** The body's tensors by name, in header order; `__metadata__` is skipped. */
export function readSafetensors(body: Uint8Array, limits: SafetensorsLimits): Map<string, TensorData<NumericData>> {
  if (body.byteLength < 8) throw bad(`is ${body.byteLength} bytes, shorter than its 8-byte header length`);
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES))
    throw bad(`claims a ${n}-byte header, over the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit`);
  const headerLength = Number(n);
  if (8 + headerLength > body.byteLength)
    throw bad(`is truncated: its header needs ${8 + headerLength} bytes, the body has ${body.byteLength}`);
  let header: unknown;
  try {
    header = JSON.parse(decoder.decode(body.subarray(8, 8 + headerLength)));
  } catch (err) {
    throw bad(`has a header that is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header))
    throw bad('has a header that is not a JSON object');
  const data = body.subarray(8 + headerLength);
  const out = new Map<string, TensorData<NumericData>>();
  let total = 0;
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const where = `tensor '${clip(name)}'`;
    if (entry === null || typeof entry !== 'object') throw bad(`${where}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    const info = typeof dtype === 'string' ? bySafetensorsCode.get(dtype) : undefined;
    if (!info)
      throw bad(
        `${where} has dtype ${clip(JSON.stringify(dtype) ?? 'none')}, which is not read; send one of ${[...bySafetensorsCode.keys()].join(', ')}`,
      );
    if (!Array.isArray(shape) || shape.length > 32 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(
        `${where} has shape ${clip(JSON.stringify(shape) ?? 'none')}; expected an array of non-negative integers`,
      );
    }
    const dims = shape as number[];
    const count = elementCount(dims, limits.maxTensorElements);
    total += count;
    if (count > limits.maxTensorElements || total > limits.maxTensorElements) {
      throw new ScoringError(
        'TOO_MANY_ELEMENTS',
        `safetensors body ${where} has shape [${dims.join(',')}], over the cap of ${limits.maxTensorElements} elements (MAX_TENSOR_ELEMENTS)`,
      );
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw bad(`${where} has data_offsets ${clip(JSON.stringify(offsets) ?? 'none')}; expected [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (end - begin !== count * info.bytes)
      throw bad(
        `${where}: shape [${dims.join(',')}] of ${dtype} is ${count * info.bytes} bytes, its data_offsets span ${end - begin}`,
      );
    if (end > data.byteLength)
      throw bad(`is truncated: ${where} ends at data byte ${end}, the body has ${data.byteLength}`);
    out.set(name, { type: info.type, data: typedData(info, data.subarray(begin, end), count), dims });
  }
  return out;
}

/** The safetensors bytes of named tensors; the header padded with spaces to 8 bytes as the reference writer pads it. */
export function writeSafetensors(tensors: Record<string, TensorData> | Map<string, TensorData>): Uint8Array {
  // Widest elements first, as the reference writer orders them: with no holes allowed between tensors
  // (the spec's rule, which its readers check), that keeps every tensor aligned for its type.
  const size = (t: TensorData) => elementInfo(t.type).binary?.bytes ?? 1;
  const entries = (tensors instanceof Map ? [...tensors] : Object.entries(tensors)).sort(
    (a, b) => size(b[1]) - size(a[1]),
  );
  const header: Record<string, unknown> = {};
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of entries) {
    const info = elementInfo(t.type).binary;
    if (!info)
      throw new ScoringError(
        'TYPE',
        `tensor '${clip(name)}' has ${t.type} elements, which safetensors cannot carry; ask for JSON`,
      );
    const bytes = bytesOf(t.data as NumericData);
    header[name] = { dtype: info.safetensors, shape: t.dims, data_offsets: [offset, offset + bytes.byteLength] };
    parts.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json = json.padEnd(json.length + ((8 - (Buffer.byteLength(json) % 8)) % 8), ' ');
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
