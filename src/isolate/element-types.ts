/**
 * The element types a binary body can carry, by their ONNX names, with each format's code for them
 * (NumPy's descr, safetensors' dtype), their size and the typed array that holds them. One table:
 * when src/onnx/ has its own table of every ONNX element type, point this one at it.
 */

export type BinaryElementType =
  | 'float32' | 'float64' | 'float16'
  | 'int8' | 'int16' | 'int32' | 'int64'
  | 'uint8' | 'uint16' | 'uint32' | 'uint64'
  | 'bool';

export type BinaryTypedArray =
  | Float32Array | Float64Array | Uint16Array | Int8Array | Int16Array | Int32Array
  | BigInt64Array | Uint8Array | Uint32Array | BigUint64Array;

/** The shape of src/onnx/tensors.ts's TensorData, for every element type; float16 is its bits in a Uint16Array, bool a Uint8Array of 0/1. */
export interface BinaryTensor {
  type: BinaryElementType;
  data: BinaryTypedArray;
  dims: number[];
}

type ArrayMaker = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): BinaryTypedArray; new (length: number): BinaryTypedArray };

export interface ElementTypeInfo {
  type: BinaryElementType;
  /** NumPy's type code after the byte-order character: f4, i8, u1, b1... */
  npy: string;
  safetensors: string;
  bytes: number;
  array: ArrayMaker;
}

export const ELEMENT_TYPES: readonly ElementTypeInfo[] = [
  { type: 'float32', npy: 'f4', safetensors: 'F32', bytes: 4, array: Float32Array },
  { type: 'float64', npy: 'f8', safetensors: 'F64', bytes: 8, array: Float64Array },
  { type: 'float16', npy: 'f2', safetensors: 'F16', bytes: 2, array: Uint16Array },
  { type: 'int8', npy: 'i1', safetensors: 'I8', bytes: 1, array: Int8Array },
  { type: 'int16', npy: 'i2', safetensors: 'I16', bytes: 2, array: Int16Array },
  { type: 'int32', npy: 'i4', safetensors: 'I32', bytes: 4, array: Int32Array },
  { type: 'int64', npy: 'i8', safetensors: 'I64', bytes: 8, array: BigInt64Array },
  { type: 'uint8', npy: 'u1', safetensors: 'U8', bytes: 1, array: Uint8Array },
  { type: 'uint16', npy: 'u2', safetensors: 'U16', bytes: 2, array: Uint16Array },
  { type: 'uint32', npy: 'u4', safetensors: 'U32', bytes: 4, array: Uint32Array },
  { type: 'uint64', npy: 'u8', safetensors: 'U64', bytes: 8, array: BigUint64Array },
  { type: 'bool', npy: 'b1', safetensors: 'BOOL', bytes: 1, array: Uint8Array },
] as ElementTypeInfo[];

export const byType = new Map(ELEMENT_TYPES.map((t) => [t.type, t]));
export const byNpyCode = new Map(ELEMENT_TYPES.map((t) => [t.npy, t]));
export const bySafetensorsCode = new Map(ELEMENT_TYPES.map((t) => [t.safetensors, t]));

/**
 * A typed array over `bytes` without a copy where its offset is aligned for the type, else a copy
 * (a body lands in the isolate's buffer wherever the previous one ended).
 */
export function typedView(info: ElementTypeInfo, bytes: Uint8Array, count: number): BinaryTypedArray {
  if (bytes.byteOffset % info.bytes === 0) return new info.array(bytes.buffer, bytes.byteOffset, count);
  const copy = new info.array(count);
  new Uint8Array(copy.buffer).set(bytes.subarray(0, count * info.bytes));
  return copy;
}

/** The little-endian bytes of a typed array, as a view. */
export function bytesOf(data: BinaryTypedArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The product of dims, or Infinity once it passes `cap`: a lying header's 10^12 never reaches an allocation. */
export function elementCount(dims: readonly number[], cap: number): number {
  let n = 1;
  for (const d of dims) {
    n *= d;
    if (n > cap) return Infinity;
  }
  return n;
}
