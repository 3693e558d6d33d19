import assert from 'node:assert/strict';
import { test } from 'node:test';
import { packBodies, packOutcomes, unpackBodies, unpackOutcomes } from '../../src/isolate/protocol.js';

test('bodies packed into one buffer come back as the same bytes, in order', () => {
  const bodies = ['{"data":[1]}', '', 'ünï', '{"data":[[2,3]]}'].map((t) => Buffer.from(t));
  const unpacked = unpackBodies(packBodies(bodies));
  assert.deepStrictEqual(
    unpacked.map((b) => Buffer.from(b).toString()),
    bodies.map((b) => b.toString()),
  );
});

test('outcomes travel as one buffer of UTF-8 reply bodies plus the failures, each at its index', () => {
  const packed = packOutcomes([
    { ok: true, json: '{"label":[0]}' },
    { ok: false, code: 'SHAPE', message: "input 'x' expects shape [-1,4], got [1,3]" },
    { ok: true, json: '"ünïcode → here"' },
    { ok: true, json: '[]' },
  ]);
  assert.equal(packed.bodies.bytes.byteOffset, 0, 'a buffer of its own, so a thread can take it over');
  assert.equal(packed.bodies.bytes.buffer.byteLength, packed.bodies.bytes.byteLength);
  const out = unpackOutcomes(packed);
  assert.equal(out.length, 4);
  assert.deepStrictEqual(out[1], { ok: false, code: 'SHAPE', message: "input 'x' expects shape [-1,4], got [1,3]" });
  const bodies = out.map((o) => (o.ok ? o.body.toString('utf8') : undefined));
  assert.deepStrictEqual(bodies, ['{"label":[0]}', undefined, '"ünïcode → here"', '[]']);
  assert.ok(out[0].ok && Buffer.isBuffer(out[0].body), 'amqplib publishes Buffers');
});

test('ASCII-only outcomes take the short way to their byte offsets, with the same result', () => {
  const out = unpackOutcomes(
    packOutcomes([
      { ok: true, json: '1' },
      { ok: true, json: '22' },
      { ok: true, json: '333' },
    ]),
  );
  assert.deepStrictEqual(
    out.map((o) => (o.ok ? o.body.toString() : '')),
    ['1', '22', '333'],
  );
});

test('each packed body starts on an 8-byte boundary, so a tensor inside it can be viewed in place', () => {
  const unpacked = unpackBodies(packBodies([Buffer.from('abc'), Buffer.from('defgh'), Buffer.from('')]));
  assert.deepStrictEqual(
    unpacked.map((b) => Buffer.from(b).toString()),
    ['abc', 'defgh', ''],
  );
  for (const b of unpacked) assert.equal(b.byteOffset % 8, 0);
});

test('a binary reply travels beside JSON ones and comes back with its content type', () => {
  const out = unpackOutcomes(
    packOutcomes([
      { ok: true, json: '[1]' },
      { ok: true, bytes: new Uint8Array([0x93, 0x4e]), contentType: 'application/x-npy' },
      { ok: false, code: 'SHAPE', message: 'no' },
    ]),
  );
  assert.ok(out[0].ok && out[1].ok);
  assert.equal(out[0].body.toString(), '[1]');
  assert.equal(out[0].contentType, undefined);
  assert.deepStrictEqual([...out[1].body], [0x93, 0x4e]);
  assert.equal(out[1].contentType, 'application/x-npy');
  assert.deepStrictEqual(out[2], { ok: false, code: 'SHAPE', message: 'no' });
});

test('one large body that owns its buffer is sent as it is, not copied; a slice of a larger buffer is copied', () => {
  const big = Buffer.concat([Buffer.alloc(70_000, 1), Buffer.alloc(10, 2)]); // what amqplib makes of a multi-frame body
  const packed = packBodies([big]);
  assert.equal(packed.bytes, big, 'no copy');
  assert.deepEqual(unpackBodies(packed)[0].byteLength, big.byteLength);
  const slice = Buffer.alloc(200_000).subarray(8, 100_008);
  assert.notEqual(
    packBodies([slice]).bytes.buffer,
    slice.buffer,
    'a view on a larger buffer is copied: the whole buffer would travel',
  );
  assert.notEqual(packBodies([big, Buffer.from('x')]).bytes, big, 'several bodies are packed together');
});

test("JSON answers written as bytes (the built-in script's): a batch answered whole travels as its own buffer, uncopied; with an error or a text among them, copied side by side", () => {
  const encoder = new TextEncoder();
  const one = encoder.encode('{"y":[[1]]}[[2,3]]"ü"');
  const views = [one.subarray(0, 11), one.subarray(11, 18), one.subarray(18)];
  const whole = packOutcomes(views.map((json) => ({ ok: true as const, json })));
  assert.equal(whole.bodies.bytes.buffer, one.buffer, 'the answers buffer itself');
  assert.deepStrictEqual(
    unpackOutcomes(whole).map((o) => (o.ok ? o.body.toString('utf8') : undefined)),
    ['{"y":[[1]]}', '[[2,3]]', '"ü"'],
  );
  const mixed = packOutcomes([
    { ok: true, json: views[0] },
    { ok: false, code: 'SHAPE', message: 'wrong shape' },
    { ok: true, json: '"é as text"' },
    { ok: true, json: views[2] },
  ]);
  assert.notEqual(mixed.bodies.bytes.buffer, one.buffer);
  assert.equal(mixed.bodies.bytes.byteOffset, 0, 'a buffer of its own, so a thread can take it over');
  const out = unpackOutcomes(mixed);
  assert.deepStrictEqual(
    out.map((o) => (o.ok ? o.body.toString('utf8') : o.code)),
    ['{"y":[[1]]}', 'SHAPE', '"é as text"', '"ü"'],
  );
  const later = packOutcomes([
    { ok: true, json: views[1] },
    { ok: true, json: views[2] },
  ]);
  assert.notEqual(later.bodies.bytes.buffer, one.buffer, 'views not from the start of their buffer are copied');
  assert.deepStrictEqual(
    unpackOutcomes(later).map((o) => (o.ok ? o.body.toString('utf8') : undefined)),
    ['[[2,3]]', '"ü"'],
  );
});
