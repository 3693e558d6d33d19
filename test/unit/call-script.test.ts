import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EntryScript } from '../../src/isolate/entry-script.js';
import { callScript } from '../../src/isolate/call-script.js';
import type { Scored } from '../../src/isolate/protocol.js';

const MAX = 1 << 20;
const bodies = (...texts: string[]) => texts.map((t) => Buffer.from(t));
const jsonOf = (s: Scored) =>
  !s.ok
    ? { error: s.code }
    : 'json' in s
      ? JSON.parse(typeof s.json === 'string' ? s.json : new TextDecoder().decode(s.json))
      : { bytes: [...s.bytes], contentType: s.contentType };

/** An entry script whose run echoes the data text it was given, and records every call. */
function echoScript(extra: Partial<EntryScript> = {}): EntryScript & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    init: () => undefined,
    run: (data: string) => {
      calls.push(`run ${data}`);
      if (data.includes('boom')) throw new Error('boom');
      return { echo: JSON.parse(data) };
    },
    ...extra,
  };
}

test('a bad body gets its own error and its neighbours are scored, in order', async () => {
  const s = echoScript({ runBatch: (items: string[]) => items.map((t) => ({ echo: JSON.parse(t) })) });
  const out = await callScript(s, 'runBatch', bodies('{"data":[1]}', 'not json', '{"nodata":1}', '{"data":"x"}'), MAX);
  assert.deepEqual(out.map(jsonOf), [{ echo: [1] }, { error: 'BAD_JSON' }, { error: 'NO_DATA' }, { echo: 'x' }]);
});

test('a runBatch that throws is retried item by item with run, so only the culprit gets an error', async () => {
  const s = echoScript({
    runBatch: () => {
      throw new Error('batch failed');
    },
  });
  const out = await callScript(s, 'runBatch', bodies('{"data":1}', '{"data":"boom"}', '{"data":3}'), MAX);
  assert.deepEqual(out.map(jsonOf), [{ echo: 1 }, { error: 'RUN_FAILED' }, { echo: 3 }]);
  assert.deepEqual(s.calls, ['run 1', 'run "boom"', 'run 3']);
});

test("readBody's values go to runBatchParsed; run() and a failed batch get the body's data, read the general way", async () => {
  const prepared = (body: Uint8Array) => ({ prepared: Buffer.from(body).toString() });
  const seen: unknown[][] = [];
  const s = echoScript({
    readBody: prepared,
    runBatchParsed: (values: unknown[]) => {
      seen.push(values);
      return values.map(() => 'batched');
    },
  });
  assert.deepEqual((await callScript(s, 'runBatch', bodies('{"data":[1,2]}', '{"data":[3]}'), MAX)).map(jsonOf), [
    'batched',
    'batched',
  ]);
  assert.deepEqual(seen, [[{ prepared: '{"data":[1,2]}' }, { prepared: '{"data":[3]}' }]]);

  // A batch of one takes the same path: run() would turn readBody's tensor back into text.
  assert.deepEqual((await callScript(s, 'run', bodies('{"data":[4]}'), MAX)).map(jsonOf), ['batched']);
  assert.deepEqual(seen[1], [{ prepared: '{"data":[4]}' }]);
  assert.deepEqual(s.calls, [], 'run() is never called');

  const failing = echoScript({
    readBody: prepared,
    runBatchParsed: () => {
      throw new Error('batch failed');
    },
  });
  assert.deepEqual((await callScript(failing, 'runBatch', bodies('{"data":[5]}', '{"data":[6]}'), MAX)).map(jsonOf), [
    { echo: [5] },
    { echo: [6] },
  ]);
  assert.deepEqual(failing.calls, ['run [5]', 'run [6]']);
});

test('a script with an inputSchema is never given readBody values: data is validated as parsed JSON', async () => {
  let read = 0;
  const s = echoScript({
    readBody: () => {
      read++;
      return { prepared: true };
    },
    inputSchema: { type: 'array', items: { type: 'number' } },
    runBatchParsed: (values: unknown[]) => values,
  });
  const out = await callScript(s, 'runBatch', bodies('{"data":[1,2]}', '{"data":["x"]}'), MAX);
  assert.deepEqual(out.map(jsonOf), [[1, 2], { error: 'SCHEMA' }]);
  assert.equal(read, 0);
});

test("an Error result becomes that item's error; a result JSON cannot carry is BAD_RESULT", async () => {
  const s = echoScript({ runBatch: () => [new Error('bad row'), 10n, { ok: 1 }] });
  const out = await callScript(s, 'runBatch', bodies('{"data":1}', '{"data":2}', '{"data":3}'), MAX);
  assert.deepEqual(out.map(jsonOf), [{ error: 'RUN_FAILED' }, { error: 'BAD_RESULT' }, { ok: 1 }]);
  assert.equal(!out[0].ok && out[0].message, 'bad row');
});

test('a body over MAX_MESSAGE_BYTES is TOO_LARGE and never parsed', async () => {
  const read: string[] = [];
  const s = echoScript({
    readBody: (b: Uint8Array) => void read.push(Buffer.from(b).toString()),
    runBatchParsed: (v: unknown[]) => v,
  });
  const out = await callScript(s, 'runBatch', bodies('{"data":[1,2,3,4,5,6]}', '{"data":1}'), 12);
  assert.deepEqual(out.map(jsonOf), [{ error: 'TOO_LARGE' }, 1]);
  assert.deepEqual(read, ['{"data":1}']);
});

for (const [what, wrong] of [
  ['one result too few', (items: string[]) => items.slice(1).map((t) => ({ batched: JSON.parse(t) }))],
  ['one result too many', (items: string[]) => [...items, '1'].map((t) => ({ batched: JSON.parse(t) }))],
  ['not an array', () => ({ batched: true })],
] as const) {
  test(`a runBatch that returns ${what} is not trusted: each item is scored again with run`, async () => {
    const s = echoScript({ runBatch: wrong as (items: string[]) => unknown[] });
    const out = await callScript(s, 'runBatch', bodies('{"data":1}', '{"data":2}', '{"data":3}'), MAX);
    assert.deepEqual(out.map(jsonOf), [{ echo: 1 }, { echo: 2 }, { echo: 3 }]);
    assert.deepEqual(s.calls, ['run 1', 'run 2', 'run 3']);
  });
}

test('a result with a cycle is BAD_RESULT for its item alone, from run and from runBatch', async () => {
  const cyclic = () => {
    const o: Record<string, unknown> = { a: 1 };
    o.self = o;
    return o;
  };
  const viaRun = echoScript({ run: (data: string) => (data === '2' ? cyclic() : { echo: JSON.parse(data) }) });
  const out = await callScript(viaRun, 'run', bodies('{"data":1}', '{"data":2}', '{"data":3}'), MAX);
  assert.deepEqual(out.map(jsonOf), [{ echo: 1 }, { error: 'BAD_RESULT' }, { echo: 3 }]);
  assert.match(!out[1].ok ? out[1].message : '', /^run returned a value JSON cannot carry: .*circular/i);

  const viaBatch = echoScript({
    runBatch: (items: string[]) => items.map((t) => (t === '2' ? cyclic() : { batched: JSON.parse(t) })),
  });
  const batched = await callScript(viaBatch, 'runBatch', bodies('{"data":1}', '{"data":2}', '{"data":3}'), MAX);
  assert.deepEqual(batched.map(jsonOf), [{ batched: 1 }, { error: 'BAD_RESULT' }, { batched: 3 }]);
});

// JSON.parse reads 1e400 (and any literal beyond a double) as Infinity, and dataText writes Infinity as null:
// today run() receives "[null]", a value the sender never sent. It should be the sender's error instead.
test('a number beyond a double ({"data":[1e400]}) is a BAD_JSON error naming it, and run() is never called with null in its place', async () => {
  const s = echoScript();
  const out = await callScript(
    s,
    'run',
    bodies('{"data":[1e400]}', `{"data":[${'9'.repeat(400)}]}`, '{"data":[-1e400,1]}'),
    MAX,
  );
  assert.deepEqual(out.map(jsonOf), [{ error: 'BAD_JSON' }, { error: 'BAD_JSON' }, { error: 'BAD_JSON' }]);
  for (const o of out) assert.match(!o.ok ? o.message : '', /out of range/);
  assert.deepEqual(s.calls, [], 'run() was not called');
});

test('a binary message reaches run as its bytes with its content type and headers; a JSON one as its data text', async () => {
  const seen: unknown[] = [];
  const s: EntryScript = {
    init: () => undefined,
    run: (data, meta) => {
      seen.push([data instanceof Uint8Array ? [...data] : data, meta]);
      return 'ok';
    },
  };
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47]);
  await callScript(s, 'run', [png], MAX, [{ contentType: 'image/png', headers: { 'x-camera': 'a' } }]);
  await callScript(s, 'run', bodies('{"data":[1]}'), MAX);
  await callScript(s, 'run', bodies('{"data":[2]}'), MAX, [{ contentType: 'application/json; charset=utf-8' }]);
  assert.deepEqual(seen, [
    [[0x89, 0x50, 0x4e, 0x47], { contentType: 'image/png', headers: { 'x-camera': 'a' } }],
    ['[1]', { contentType: 'application/json', headers: {} }],
    ['[2]', { contentType: 'application/json; charset=utf-8', headers: {} }],
  ]);
});

test('runBatch gets bytes and text side by side, with one meta per item; binary bodies skip JSON parsing and inputSchema', async () => {
  let got: unknown;
  const s: EntryScript = {
    init: () => undefined,
    run: () => 'unused',
    inputSchema: { type: 'array' },
    runBatch: (items, metas) => {
      got = [items.map((i) => (i instanceof Uint8Array ? 'bytes' : i)), metas!.map((m) => m.contentType)];
      return items.map(() => 1);
    },
  };
  const out = await callScript(s, 'runBatch', [Buffer.from('{"data":[1]}'), Buffer.from('not json at all')], MAX, [
    undefined,
    { contentType: 'application/x-npy' },
  ]);
  assert.deepEqual(out.map(jsonOf), [1, 1]);
  assert.deepEqual(got, [
    ['[1]', 'bytes'],
    ['application/json', 'application/x-npy'],
  ]);
});

test('a script returning { contentType, body: Uint8Array } makes a binary reply; without a contentType it is an error', async () => {
  const s: EntryScript = {
    init: () => undefined,
    run: (data) =>
      data === '1' ? { contentType: 'application/x-npy', body: new Uint8Array([7, 8]) } : { body: new Uint8Array([1]) },
  };
  assert.deepEqual((await callScript(s, 'run', bodies('{"data":1}'), MAX)).map(jsonOf), [
    { bytes: [7, 8], contentType: 'application/x-npy' },
  ]);
  assert.deepEqual((await callScript(s, 'run', bodies('{"data":2}'), MAX)).map(jsonOf), [{ error: 'BAD_RESULT' }]);
});
