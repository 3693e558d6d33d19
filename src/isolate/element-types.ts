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

/**
 * Which element types convert to which without changing any value (numpy's "safe" casting, less the
 * int64/uint64 → float64 casts numpy allows, which round above 2^53). A body of the first type is
 * converted for an input of the second; any other mismatch is refused.
 */
const EXACT_CASTS: Readonly<Record<BinaryElementType, readonly BinaryElementType[]>> = {
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
};

export function convertsExactly(from: BinaryElementType, to: BinaryElementType): boolean {
  return from === to || EXACT_CASTS[from].includes(to);
}

/** The types that convert exactly to `to`, itself first: for an error that says what to send instead. */
export function typesConvertingTo(to: BinaryElementType): BinaryElementType[] {
  return [to, ...ELEMENT_TYPES.map((t) => t.type).filter((t) => t !== to && EXACT_CASTS[t].includes(to))];
}

/** `t` as `to` (one copy); the caller has checked convertsExactly. */
export function convertTensor(t: BinaryTensor, to: BinaryElementType): BinaryTensor {
  if (t.type === to) return t;
  const info = byType.get(to)!;
  const n = t.data.length;
  const out = new info.array(n);
  const read: (i: number) => number = t.type === 'float16' ? (i) => halfToFloat((t.data as Uint16Array)[i]) : (i) => Number(t.data[i]);
  if (to === 'int64' || to === 'uint64') {
    const big = out as BigInt64Array | BigUint64Array;
    for (let i = 0; i < n; i++) big[i] = BigInt(read(i));
  } else if (to === 'float16') {
    // Only from bool, uint8 and int8: every one of their values is a float16 with these exact bits.
    const half = out as Uint16Array;
    for (let i = 0; i < n; i++) half[i] = floatToHalfExact(read(i));
  } else {
    const num = out as Float64Array;
    for (let i = 0; i < n; i++) num[i] = read(i);
  }
  return { type: to, data: out, dims: t.dims };
}

/** IEEE 754 half-precision bits → the number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** An integer of magnitude under 2048 → its half-precision bits (exact for those). */
function floatToHalfExact(v: number): number {
  if (v === 0) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}
