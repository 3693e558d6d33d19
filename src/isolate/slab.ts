/**
 * Tensors read from bodies are views on a shared slab, as Node's Buffer pool does for small buffers: one
 * allocation for hundreds of messages instead of one each (each an ArrayBuffer the thread's GC must
 * account for), and the bodies of one batch, read one after another, lie side by side, so stacking them
 * (onnx/batching.ts) is a view, not a copy. JSON numbers (numeric-data.ts) and binary bodies that could
 * not be viewed in place (npy.ts, safetensors.ts) take their room here. A slab is never reused: a view
 * keeps it alive until the last view dies, and a full one is left to the GC.
 */

import type { BinaryCodes, NumericData } from '../onnx/element-types.js';

/** 1 MB a slab; a tensor over a quarter of that gets a buffer of its own. */
const SLAB_BYTES = 1 << 20;

interface TypedArrayMaker<T> {
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/**
 * Memory not zero-filled (Buffer.allocUnsafeSlow's own ArrayBuffer, as Buffer.allocUnsafe's pool is): every
 * caller writes each element it is handed before anything reads it, so zeroing a fresh slab, or a batch
 * stacked by copying (onnx/batching.ts), would be work thrown away on every message.
 */
function uninitialised(bytes: number): ArrayBuffer {
  return Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer;
}

let slab = uninitialised(SLAB_BYTES);
let used = 0;

/** Room for `count` elements, not zero-filled: the caller writes every element. */
export function slabArray<T>(Typed: TypedArrayMaker<T>, count: number): T {
  const size = Typed.BYTES_PER_ELEMENT;
  const bytes = count * size;
  if (bytes > SLAB_BYTES / 4) return new Typed(uninitialised(bytes), 0, count);
  // Aligned to the element's size only, so rows of one type taken in turn stay adjacent.
  let at = Math.ceil(used / size) * size;
  if (at + bytes > SLAB_BYTES) {
    slab = uninitialised(SLAB_BYTES);
    at = 0;
  }
  used = at + bytes;
  return new Typed(slab, at, count);
}

/**
 * The `count` elements at `offset` in `bytes` as a typed array. A small tensor is copied onto the slab even where it could be
 * viewed in place: the rows of a batch then lie side by side and stacking them is a view, where one row
 * viewed in its body would make the whole batch a copy. A large one is viewed in place where its offset is
 * aligned for the type (a body lies wherever its frame put it in a socket read), else copied.
 */
export function typedData(info: BinaryCodes, bytes: Uint8Array, count: number, offset = 0): NumericData {
  const byteLength = count * info.bytes;
  const at = bytes.byteOffset + offset;
  if (byteLength > SLAB_BYTES / 4 && at % info.bytes === 0) return new info.array(bytes.buffer, at, count);
  const copy = slabArray(info.array, count);
  new Uint8Array(copy.buffer, copy.byteOffset, byteLength).set(new Uint8Array(bytes.buffer, at, byteLength));
  return copy;
}
