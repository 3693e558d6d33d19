/**
 * The consumer's side of the Python isolate's wire, without Python: frames built and read back,
 * split anywhere by the pipe; messages parsed to the same codes a TypeScript script's isolate gives;
 * Python's results and the host's failures merged in message order.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EntryScript } from '../../src/isolate/entry-script.js';
import { mergeOutcomes, readItems } from '../../src/isolate/python-isolate.js';
import {
  FRAME,
  FrameReader,
  STATUS,
  decodeResult,
  encodeCall,
  encodeJsonFrame,
  metaSection,
} from '../../src/isolate/python-protocol.js';
import { unpackOutcomes } from '../../src/isolate/protocol.js';
import { callScript } from '../../src/isolate/call-script.js';

const body = (x: unknown) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x));

/** A result frame's payload as scorer_runtime.py writes it: id, n, status[n], end[n], metaLength, meta, bodies. */
function resultPayload(id: number, items: Array<[number, string | Buffer]>, contentTypes: string[] = []): Buffer {
  const bodies = items.map(([, b]) => (typeof b === 'string' ? Buffer.from(b) : b));
  const meta = contentTypes.length > 0 ? Buffer.from(JSON.stringify(contentTypes)) : Buffer.alloc(0);
  const head = Buffer.alloc(8 + items.length * 5 + 4);
  head.writeUInt32LE(id, 0);
  head.writeUInt32LE(items.length, 4);
  let end = 0;
  items.forEach(([status], i) => {
    head[8 + i] = status;
    head.writeUInt32LE((end += bodies[i].length), 8 + items.length + 4 * i);
  });
  head.writeUInt32LE(meta.length, 8 + items.length * 5);
  return Buffer.concat([head, meta, ...bodies]);
}

test('a call frame carries each data text as UTF-8 bytes with its end offset, after the kinds and an empty metadata section', () => {
  const frame = encodeCall(7, 'runBatch', ['[1,2]', '"ü"', '']);
  assert.equal(frame.readUInt32LE(0), frame.length - 4);
  assert.equal(frame[4], FRAME.call);
  const p = frame.subarray(5);
  assert.equal(p.readUInt32LE(0), 7);
  assert.equal(p[4], 1, 'runBatch');
  assert.equal(p.readUInt32LE(5), 3);
  assert.deepEqual([...p.subarray(9, 12)], [0, 0, 0], 'every item is a data text');
  const ends = [0, 1, 2].map((i) => p.readUInt32LE(12 + 4 * i));
  assert.deepEqual(ends, [5, 9, 9], 'ü is two bytes');
  assert.equal(p.readUInt32LE(24), 0, 'no metadata');
  assert.equal(p.subarray(28).toString('utf8'), '[1,2]"ü"');
});

test('frames are reassembled whatever the chunks the pipe delivers', () => {
  const frames = Buffer.concat([
    encodeJsonFrame(FRAME.ready, { a: 1 }),
    encodeCall(1, 'run', ['x'.repeat(70_000)]),
    encodeJsonFrame(FRAME.initFailed, 'no'),
  ]);
  for (const size of [1, 3, 5, 4096, frames.length]) {
    const reader = new FrameReader();
    const got = [];
    for (let at = 0; at < frames.length; at += size) got.push(...reader.push(frames.subarray(at, at + size)));
    assert.deepEqual(
      got.map((f) => f.type),
      [FRAME.ready, FRAME.call, FRAME.initFailed],
      `chunks of ${size}`,
    );
    assert.deepEqual(JSON.parse(got[0].payload.toString()), { a: 1 });
    assert.equal(got[1].payload.length, 9 + 5 + 4 + 70_000);
  }
});

test('a result frame is read into statuses, ends and the bodies; a frame whose ends disagree with its length is refused', () => {
  const r = decodeResult(
    resultPayload(9, [
      [0, '[1]'],
      [1, 'boom'],
      [0, '"ü"'],
    ]),
  );
  assert.equal(r.id, 9);
  assert.deepEqual([...r.status], [0, 1, 0]);
  assert.deepEqual([...r.ends], [3, 7, 11]);
  assert.equal(r.bodies.toString(), '[1]boom"ü"');
  const truncated = resultPayload(9, [[0, '[1]']]).subarray(0, -1);
  assert.throws(() => decodeResult(truncated), /bodies end at 3/);
});

test('bad messages get the codes and words a TypeScript script isolate gives them, and only valid ones reach Python', async () => {
  const deep = `{"data":${'['.repeat(70)}${']'.repeat(70)}}`;
  const bodies = [
    body({ data: [[1, 2.5]] }),
    Buffer.from([0xff, 0xfe]),
    body('{"data": [1,'),
    body([1, 2]),
    body({ other: 1 }),
    body(deep),
    body({ data: 'x'.repeat(200) }),
    body({ data: { a: 'ü', b: null } }),
    body({ data: 'wrong' }),
  ];
  const schema = { anyOf: [{ type: 'array' }, { type: 'object' }, { type: 'string', maxLength: 1000 }] };
  const seen: string[] = [];
  const tsScript: EntryScript = { init() {}, run: (d) => (seen.push(d as string), d), inputSchema: schema };
  const ts = await callScript(tsScript, 'run', bodies, 150);
  const items = readItems(bodies, 150, schema);
  assert.deepEqual(items.items, seen, 'Python gets the same data texts run() gets in a TypeScript isolate');
  assert.deepEqual(items.indexes, [0, 7, 8]);
  const expected = ts.flatMap((s, index) => (s.ok ? [] : [{ index, code: s.code, message: s.message }]));
  assert.deepEqual(items.failures, expected);
  assert.deepEqual(
    items.failures.map((f) => f.code),
    ['BAD_UTF8', 'BAD_JSON', 'NOT_OBJECT', 'NO_DATA', 'TOO_DEEP', 'TOO_LARGE'],
  );
});

test('an inputSchema failure is a SCHEMA failure of its item, before Python', () => {
  const items = readItems([body({ data: { age: 'x' } }), body({ data: { age: 3 } })], 1000, {
    type: 'object',
    properties: { age: { type: 'integer' } },
  });
  assert.deepEqual(items.indexes, [1]);
  assert.equal(items.failures[0].code, 'SCHEMA');
  assert.match(items.failures[0].message, /data\/age must be integer/);
});

test("Python's outcomes and the host's failures are merged in message order, the bodies left where they are", () => {
  const items = readItems([body('nope'), body({ data: 1 }), body({ data: 2 }), body({}), body({ data: 3 })], 1000);
  const result = decodeResult(
    resultPayload(1, [
      [0, '{"a":1}'],
      [1, 'ValueError\nsecond line'],
      [2, 'run returned a value JSON cannot carry: NaN'],
    ]),
  );
  const outcomes = unpackOutcomes(mergeOutcomes(5, items, result));
  assert.deepEqual(
    outcomes.map((o) =>
      o.ok ? { ok: true, body: o.body.toString() } : { ok: false, code: o.code, message: o.message },
    ),
    [
      { ok: false, code: 'BAD_JSON', message: items.failures[0].message },
      { ok: true, body: '{"a":1}' },
      { ok: false, code: 'RUN_FAILED', message: 'ValueError second line' },
      { ok: false, code: 'NO_DATA', message: 'message body has no "data" key' },
      { ok: false, code: 'BAD_RESULT', message: 'run returned a value JSON cannot carry: NaN' },
    ],
  );
  const none = unpackOutcomes(mergeOutcomes(2, readItems([body('x'), body('y')], 1000), undefined));
  assert.deepEqual(
    none.map((o) => !o.ok && o.code),
    ['BAD_JSON', 'BAD_JSON'],
    'a call with no valid message needs no Python',
  );
});

test('a binary body travels as its bytes (kind 1) beside data texts, after the metadata section', () => {
  const meta = '[null,{"contentType":"image/png"}]';
  const frame = encodeCall(3, 'runBatch', ['[1]', Uint8Array.of(0x89, 0, 255)], meta);
  const p = frame.subarray(5);
  assert.equal(p.readUInt32LE(5), 2);
  assert.deepEqual([...p.subarray(9, 11)], [0, 1], 'a data text, then bytes');
  assert.deepEqual([p.readUInt32LE(11), p.readUInt32LE(15)], [3, 6]);
  assert.equal(p.readUInt32LE(19), Buffer.byteLength(meta));
  assert.equal(p.subarray(23, 23 + meta.length).toString(), meta);
  assert.deepEqual([...p.subarray(23 + meta.length)], [...Buffer.from('[1]'), 0x89, 0, 255]);
  assert.equal(frame.readUInt32LE(0), frame.length - 4);
});

test('the metadata section: one entry per item (null for none), bytes in headers as {"!": "bytes"} base64; none at all is no section', () => {
  assert.equal(metaSection([undefined, {}, undefined]), undefined, 'plain JSON messages cost no metadata');
  const section = metaSection([
    undefined,
    {
      contentType: 'image/png',
      headers: {
        'x-camera': 'gate-3',
        raw: Buffer.from([0, 255]),
        nested: { n: 1, list: [Uint8Array.of(7)] },
        at: { '!': 'timestamp', value: 1700000000 },
      },
    },
  ]);
  assert.deepEqual(JSON.parse(section!), [
    null,
    {
      contentType: 'image/png',
      headers: {
        'x-camera': 'gate-3',
        raw: { '!': 'bytes', value: 'AP8=' },
        nested: { n: 1, list: [{ '!': 'bytes', value: 'Bw==' }] },
        at: { '!': 'timestamp', value: 1700000000 },
      },
    },
  ]);
});

test('a result frame with binary items carries their content types; a count that disagrees is refused', () => {
  const r = decodeResult(
    resultPayload(
      4,
      [
        [STATUS.binary, Buffer.from([1, 2])],
        [STATUS.ok, '[1]'],
        [STATUS.binary, Buffer.from([3])],
      ],
      ['image/png', 'application/x-npy'],
    ),
  );
  assert.deepEqual([...r.status], [3, 0, 3]);
  assert.deepEqual(r.contentTypes, ['image/png', 'application/x-npy']);
  assert.deepEqual([...r.bodies], [1, 2, ...Buffer.from('[1]'), 3]);
  assert.throws(() => decodeResult(resultPayload(4, [[STATUS.binary, 'x']])), /1 binary items, 0 content types/);
});

test('a binary message skips the parse and input_schema, and reaches Python as its bytes; a JSON-typed one is parsed', () => {
  const png = Uint8Array.of(0x89, 0x50, 0x4e, 0x47);
  const items = readItems([png, body({ data: 'x' }), body('not json'), body({ data: 1 })], 1000, { type: 'string' }, [
    { contentType: 'image/png' },
    { contentType: 'application/json; charset=utf-8' },
    { contentType: 'text/plain' },
    undefined,
  ]);
  assert.deepEqual(items.indexes, [0, 1, 2]);
  assert.equal(items.items[0], png, 'the body itself, not a copy');
  assert.equal(items.items[1], '"x"');
  assert.deepEqual(items.items[2], Buffer.from('not json'), 'text/plain is not JSON: bytes, no BAD_JSON');
  assert.deepEqual(
    items.failures.map((f) => [f.index, f.code]),
    [[3, 'SCHEMA']],
  );
});

test('binary replies are merged with their content types, JSON replies and failures beside them', () => {
  const items = readItems([body('nope'), Uint8Array.of(1), body({ data: 2 })], 1000, undefined, [
    undefined,
    { contentType: 'application/octet-stream' },
    undefined,
  ]);
  const result = decodeResult(
    resultPayload(
      1,
      [
        [STATUS.binary, Buffer.from([9, 8])],
        [STATUS.ok, '{"a":2}'],
      ],
      ['image/png'],
    ),
  );
  const outcomes = unpackOutcomes(mergeOutcomes(3, items, result));
  assert.equal(!outcomes[0].ok && outcomes[0].code, 'BAD_JSON');
  assert.ok(outcomes[1].ok && outcomes[2].ok);
  assert.deepEqual([...outcomes[1].body], [9, 8]);
  assert.equal(outcomes[1].contentType, 'image/png');
  assert.equal(outcomes[2].body.toString(), '{"a":2}');
  assert.equal(outcomes[2].contentType, undefined);
});
