import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { ScoringError } from '../../src/errors.js';
import { readNpy, writeNpy } from '../../src/isolate/npy.js';
import { stack } from '../../src/onnx/batching.js';

const limits = { maxTensorElements: 1 << 20 };

/** What numpy writes for `expr` (a Python expression over np), and the values as JSON. */
function numpy(expr: string): { npy: Uint8Array; values: unknown; dtype: string } {
  const py = `import numpy as np, io, sys, json, base64
a = ${expr}
b = io.BytesIO(); np.save(b, a)
print(json.dumps({"npy": base64.b64encode(b.getvalue()).decode(), "values": np.ascontiguousarray(a).astype(float if a.dtype.kind == 'f' else object).ravel().tolist() if a.dtype != np.int64 else [int(x) for x in a.ravel()], "dtype": str(a.dtype)}))`;
  const out = JSON.parse(execFileSync('python3', ['-c', py], { encoding: 'utf8' }));
  return { npy: new Uint8Array(Buffer.from(out.npy, 'base64')), values: out.values, dtype: out.dtype };
}

const flat = (data: ArrayLike<number | bigint>): unknown[] =>
  Array.from(data as ArrayLike<number>, (v) => (typeof v === 'bigint' ? Number(v) : v));

test('.npy float32, uint8, int64 and float16 written by numpy are read with their dtype, shape and values', () => {
  const f32 = numpy('np.arange(12, dtype=np.float32).reshape(3, 4) / 7');
  const t = readNpy(f32.npy, limits);
  assert.equal(t.type, 'float32');
  assert.deepEqual(t.dims, [3, 4]);
  assert.deepEqual(flat(t.data), (f32.values as number[]).map(Math.fround));

  const u8 = readNpy(numpy('np.array([[0, 1, 255]], dtype=np.uint8)').npy, limits);
  assert.equal(u8.type, 'uint8');
  assert.deepEqual(flat(u8.data), [0, 1, 255]);

  const i64 = readNpy(numpy('np.array([-(2**40), 7], dtype=np.int64)').npy, limits);
  assert.equal(i64.type, 'int64');
  assert.deepEqual([...(i64.data as BigInt64Array)], [-(2n ** 40n), 7n]);

  const f16 = readNpy(numpy('np.array([1.0, -2.5, 65504], dtype=np.float16)').npy, limits);
  assert.equal(f16.type, 'float16');
  assert.ok(f16.data instanceof Uint16Array);
  assert.deepEqual([...f16.data], [0x3c00, 0xc100, 0x7bff]); // half-precision bits
});

test('a 0-d array and a 1-d array keep their shapes', () => {
  assert.deepEqual(readNpy(numpy('np.float64(3.5)').npy, limits).dims, []);
  assert.deepEqual(readNpy(numpy('np.zeros(5, dtype=np.int32)').npy, limits).dims, [5]);
});

test('a large array is a view on the body when aligned; a small one is copied beside the rows read before it', () => {
  const { npy } = numpy('np.ones((300, 300), dtype=np.float32)');
  assert.equal(readNpy(npy, limits).data.buffer, npy.buffer, 'a view, not a copy');

  // Rows at whatever offsets their frames left them, aligned or not: read in turn, they lie side by side,
  // so the batch stacked from them is a view, not a copy.
  const one = numpy('np.arange(8, dtype=np.float32).reshape(1, 8) / 3').npy;
  const read = new Uint8Array(4 * (one.byteLength + 1));
  const bodies = [0, 1, 2, 3].map((k) => {
    const at = k * one.byteLength + k; // offsets 0, 1, 2, 3 past a multiple of the body's length: every alignment
    read.set(one, at);
    return read.subarray(at, at + one.byteLength);
  });
  const rows = bodies.map((b) => readNpy(b, limits));
  for (const r of rows) assert.notEqual(r.data.buffer, read.buffer, 'a small array is copied');
  const spec = [{ name: 'x', type: 'float32' as const, dims: [-1, 8] }];
  const stacked = stack(
    rows.map((r) => ({ x: r })),
    spec,
  ).x;
  assert.equal((stacked.data as Float32Array).buffer, rows[0].data.buffer, 'stacked as a view');
  assert.deepEqual(stacked.dims, [4, 8]);
  assert.deepEqual(
    flat(stacked.data as Float32Array),
    [0, 1, 2, 3].flatMap(() => flat(rows[0].data)),
  );
  assert.deepEqual(
    flat(rows[0].data),
    [0, 1, 2, 3, 4, 5, 6, 7].map((v) => Math.fround(v / 3)),
  );
});

test('a body whose bytes before its data differ from the last one read is read on its own header', () => {
  const a = numpy('np.arange(6, dtype=np.float32).reshape(2, 3)').npy;
  const b = numpy('np.arange(6, dtype=np.float32).reshape(3, 2)').npy;
  const c = numpy('np.arange(6, dtype=np.int32).reshape(2, 3)').npy;
  for (const body of [a, b, a, c, a]) readNpy(body, limits);
  assert.deepEqual(readNpy(b, limits).dims, [3, 2]);
  assert.deepEqual(readNpy(a, limits).dims, [2, 3]);
  assert.equal(readNpy(c, limits).type, 'int32');
  // The same header with a byte of data missing: the layout is reused, the length still checked.
  assert.throws(() => readNpy(a.subarray(0, a.byteLength - 1), limits), /is truncated/);
  assert.throws(() => readNpy(a, { maxTensorElements: 5 }), /over the cap of 5 elements/);
});

test('a misaligned body is copied and still read right', () => {
  const { npy } = numpy('np.arange(4, dtype=np.float64)');
  const shifted = new Uint8Array(npy.byteLength + 1).subarray(1);
  shifted.set(npy);
  assert.deepEqual(flat(readNpy(shifted, limits).data), [0, 1, 2, 3]);
});

test('big-endian and Fortran-order arrays are converted to little-endian C order', () => {
  const be = readNpy(numpy("np.arange(6, dtype='>f4').reshape(2, 3)").npy, limits);
  assert.deepEqual(flat(be.data), [0, 1, 2, 3, 4, 5]);
  const f = readNpy(numpy('np.asfortranarray(np.arange(24, dtype=np.int32).reshape(2, 3, 4))').npy, limits);
  assert.deepEqual(f.dims, [2, 3, 4]);
  assert.deepEqual(
    flat(f.data),
    Array.from({ length: 24 }, (_, i) => i),
  );
});

test('numpy reads what writeNpy writes, every dtype, shape and value', () => {
  const cases = [
    writeNpy({ type: 'float32', data: new Float32Array([1.5, -2, 3]), dims: [3] }),
    writeNpy({ type: 'int64', data: new BigInt64Array([1n, -5n, 2n ** 50n, 0n]), dims: [2, 2] }),
    writeNpy({ type: 'uint8', data: new Uint8Array([9]), dims: [1, 1, 1] }),
    writeNpy({ type: 'float16', data: new Uint16Array([0x3c00]), dims: [] }),
    writeNpy({ type: 'bool', data: new Uint8Array([1, 0]), dims: [2] }),
  ];
  const py = `import numpy as np, io, sys, json, base64
out = []
for s in json.load(sys.stdin):
    a = np.load(io.BytesIO(base64.b64decode(s)))
    out.append([str(a.dtype), list(a.shape), [int(x) if a.dtype.kind in 'iub' else float(x) for x in a.ravel()]])
print(json.dumps(out))`;
  const got = JSON.parse(
    execFileSync('python3', ['-c', py], {
      input: JSON.stringify(cases.map((c) => Buffer.from(c).toString('base64'))),
      encoding: 'utf8',
    }),
  );
  assert.deepEqual(got, [
    ['float32', [3], [1.5, -2, 3]],
    ['int64', [2, 2], [1, -5, 2 ** 50, 0]],
    ['uint8', [1, 1, 1], [9]],
    ['float16', [], [1]],
    ['bool', [2], [1, 0]],
  ]);
  for (const c of cases)
    assert.equal((10 + new DataView(c.buffer).getUint16(8, true)) % 64, 0, 'data starts on a 64-byte boundary');
});

function rejects(body: Uint8Array, code: string, pattern: RegExp): void {
  assert.throws(
    () => readNpy(body, limits),
    (err: unknown) => {
      assert.ok(err instanceof ScoringError);
      assert.equal(err.code, code);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

/** An .npy with the given header text and data bytes. */
function npyWith(header: string, dataBytes: number): Uint8Array {
  const out = new Uint8Array(10 + header.length + dataBytes);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  return out;
}

test('a truncated or lying .npy gets an error naming the problem, never an over-read', () => {
  const { npy } = numpy('np.ones((4, 4), dtype=np.float32)');
  rejects(
    npy.subarray(0, npy.byteLength - 1),
    'BAD_BINARY',
    /truncated: shape \(4, 4\) of <f4 needs 64 data bytes, the body has 63/,
  );
  rejects(npy.subarray(0, 20), 'BAD_BINARY', /truncated: its header needs/);
  rejects(npy.subarray(0, 5), 'BAD_BINARY', /magic/);
  rejects(new TextEncoder().encode('{"data": [1, 2]}'), 'BAD_BINARY', /magic/);
  const extra = new Uint8Array(npy.byteLength + 3);
  extra.set(npy);
  rejects(extra, 'BAD_BINARY', /3 bytes after its data/);
});

test('a header claiming 10^12 elements is refused before any allocation', () => {
  rejects(
    npyWith("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }\n", 16),
    'TOO_MANY_ELEMENTS',
    /shape \(1000000, 1000000\), over the cap of 1048576 elements \(MAX_TENSOR_ELEMENTS\)/,
  );
  rejects(
    npyWith("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n", 0),
    'BAD_BINARY',
    /not a NumPy header/,
  );
});

test('a hostile header is refused with one line: bad syntax, unknown dtype, oversize', () => {
  rejects(
    npyWith("{'descr': '<U5', 'fortran_order': False, 'shape': (1,), }\n", 20),
    'BAD_BINARY',
    /dtype '<U5', which is not read; send one of <f4/,
  );
  rejects(npyWith("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n", 8), 'BAD_BINARY', /dtype '\|O'/);
  rejects(npyWith("__import__('os').system('x')\n", 0), 'BAD_BINARY', /not a NumPy header \(expected '\{'/);
  rejects(npyWith("{'descr': '<f4', 'shape': (1,), }\n", 4), 'BAD_BINARY', /missing one of/);
  rejects(
    npyWith("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}\n", 4),
    'BAD_BINARY',
    /unexpected key 'extra'/,
  );
  rejects(
    npyWith(`{'descr': '<f4', 'fortran_order': False, 'shape': (${'1,'.repeat(40)}), }\n`, 4),
    'BAD_BINARY',
    /more than 32 dimensions/,
  );
  const huge = new Uint8Array(16);
  huge.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 2, 0]);
  new DataView(huge.buffer).setUint32(8, 0xffffffff, true);
  rejects(huge, 'BAD_BINARY', /4294967295-byte header, over the 10000-byte limit/);
});

test('bodies with the same header each get a shape of their own, and a header that does not parse still fails after good ones', () => {
  const body = writeNpy({ type: 'float32', data: Float32Array.of(1, 2, 3, 4), dims: [2, 2] });
  const a = readNpy(body, { maxTensorElements: 100 });
  a.dims[0] = 99;
  const b = readNpy(body, { maxTensorElements: 100 });
  assert.deepEqual(b.dims, [2, 2], 'the kept header is not the shape handed out');
  const broken = Uint8Array.from(body);
  broken[20] = 0x7b; // a stray "{" inside the header text
  assert.throws(() => readNpy(broken, { maxTensorElements: 100 }), /header/);
});
