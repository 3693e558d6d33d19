import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { ScoringError } from '../../src/errors.js';
import { readSafetensors, writeSafetensors } from '../../src/isolate/safetensors.js';

const limits = { maxTensorElements: 1 << 20 };

/** The README's Python producer: numpy and the standard library, no safetensors package. */
export const PYTHON_WRITER = `import json, struct, numpy as np
CODES = {"float32": "F32", "float64": "F64", "float16": "F16", "int64": "I64", "int32": "I32", "uint8": "U8", "int8": "I8", "bool": "BOOL"}
def safetensors_bytes(tensors):
    header, chunks, offset = {}, [], 0
    for name, a in sorted(tensors.items(), key=lambda kv: -kv[1].dtype.itemsize):
        b = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": CODES[str(a.dtype)], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        chunks.append(b); offset += len(b)
    h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(chunks)
`;

function python(body: string, input?: Uint8Array): Buffer {
  return execFileSync('python3', ['-c', PYTHON_WRITER + body], { input });
}

test('a body written by Python with numpy gives each tensor by name with its dtype, shape and values', () => {
  const body = new Uint8Array(
    python(`import sys
sys.stdout.buffer.write(safetensors_bytes({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array([[5, -1]], dtype=np.int64), "m": np.array([1, 0, 1], dtype=np.uint8)}))`),
  );
  const got = readSafetensors(body, limits);
  assert.deepEqual([...got.keys()].sort(), ['a', 'ids', 'm']);
  assert.deepEqual(got.get('a')!.dims, [2, 3]);
  assert.deepEqual([...(got.get('a')!.data as Float32Array)], [0, 1, 2, 3, 4, 5]);
  assert.equal(got.get('ids')!.type, 'int64');
  assert.deepEqual([...(got.get('ids')!.data as BigInt64Array)], [5n, -1n]);
  assert.notEqual(got.get('a')!.data.buffer, body.buffer, 'a small tensor is copied beside the last one read');
  const large = writeSafetensors({
    x: { type: 'float32', data: new Float32Array(100_000).fill(0.5), dims: [1, 100_000] },
  });
  const x = readSafetensors(large, limits).get('x')!;
  assert.equal(x.data.buffer, large.buffer, 'a large aligned tensor is a view, not a copy');
  assert.equal(x.data[99_999], 0.5);
});

test('what writeSafetensors writes reads back, and its layout has no holes (the spec reference readers check)', () => {
  const body = writeSafetensors({
    mask: { type: 'bool', data: new Uint8Array([1, 0, 1]), dims: [3] },
    x: { type: 'float64', data: new Float64Array([0.5, 2]), dims: [1, 2] },
  });
  const back = readSafetensors(body, limits);
  assert.deepEqual([...(back.get('x')!.data as Float64Array)], [0.5, 2]);
  assert.deepEqual([...(back.get('mask')!.data as Uint8Array)], [1, 0, 1]);
  const check = python(
    `import sys
raw = sys.stdin.buffer.read()
n = struct.unpack("<Q", raw[:8])[0]
assert n % 8 == 0
h = json.loads(raw[8:8 + n])
spans = sorted(v["data_offsets"] for k, v in h.items() if k != "__metadata__")
assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] == len(raw) - 8 - n
x = np.frombuffer(raw[8 + n + h["x"]["data_offsets"][0]:8 + n + h["x"]["data_offsets"][1]], dtype="<f8")
print(x.tolist())`,
    body,
  );
  assert.equal(check.toString().trim(), '[0.5, 2.0]');
});

function rejects(body: Uint8Array, code: string, pattern: RegExp): void {
  assert.throws(
    () => readSafetensors(body, limits),
    (err: unknown) => {
      assert.ok(err instanceof ScoringError);
      assert.equal(err.code, code);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

function withHeader(header: object | string, dataBytes: number): Uint8Array {
  const h = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + h.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.byteLength), true);
  out.set(h, 8);
  return out;
}

test('a truncated, lying or hostile safetensors body gets an error naming the problem', () => {
  const good = writeSafetensors({ x: { type: 'float32', data: new Float32Array(4), dims: [2, 2] } });
  rejects(
    good.subarray(0, good.byteLength - 1),
    'BAD_BINARY',
    /truncated: tensor 'x' ends at data byte 16, the body has 15/,
  );
  rejects(good.subarray(0, 12), 'BAD_BINARY', /truncated: its header needs/);
  rejects(good.subarray(0, 3), 'BAD_BINARY', /shorter than its 8-byte header length/);
  rejects(
    withHeader({ x: { dtype: 'F32', shape: [1000000, 1000000], data_offsets: [0, 4] } }, 4),
    'TOO_MANY_ELEMENTS',
    /tensor 'x' has shape \[1000000,1000000\], over the cap of 1048576 elements/,
  );
  rejects(
    withHeader({ x: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }, 2),
    'BAD_BINARY',
    /dtype "BF16", which is not read/,
  );
  rejects(
    withHeader({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4),
    'BAD_BINARY',
    /shape \[2\] of F32 is 8 bytes, its data_offsets span 4/,
  );
  rejects(
    withHeader({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4),
    'BAD_BINARY',
    /shape \[-1\]; expected an array of non-negative integers/,
  );
  rejects(withHeader('{"x": ', 0), 'BAD_BINARY', /header that is not UTF-8 JSON/);
  rejects(withHeader('[1]', 0), 'BAD_BINARY', /not a JSON object/);
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
  rejects(huge, 'BAD_BINARY', /claims a 9223372036854775808-byte header, over the 1048576-byte limit/);
});
