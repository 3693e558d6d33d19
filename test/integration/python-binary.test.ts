/**
 * CONTRACT §5 for a Python entry script, through the real broker: a message whose contentType is not
 * JSON reaches run as bytes with its content type and headers, a JSON one as its data text (a str); a
 * result {'content_type', 'body'} is replied with that content type; a seed-style run(data) unchanged.
 * The interpreter is PYTHON's default, `python3` on PATH: stdlib-only scripts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TestClient } from '../support/broker.js';
import { TestConsumers, type ConsumerQueues } from '../support/consumer-process.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-python-binary-'));
const META_SCRIPT = `
def init():
    pass

def run(data, meta):
    if meta.headers.get('x-want') == 'bytes':
        raw = data if isinstance(data, bytes) else data.encode('utf-8')
        return {'content_type': 'application/octet-stream', 'body': raw[::-1]}
    return {'kind': type(data).__name__, 'bytes': list(data) if isinstance(data, bytes) else None,
            'text': data if isinstance(data, str) else None, 'contentType': meta.content_type,
            'camera': meta.headers.get('x-camera'), 'raw': list(meta.headers['raw']) if 'raw' in meta.headers else None}

def run_batch(items, metas):
    return [run(item, meta) for item, meta in zip(items, metas)]
`;
// The seed's shape: run(data) alone, which gets bytes for a binary message and must not be given meta.
const SEED_STYLE_SCRIPT = `
import json

def init():
    pass

def run(data):
    if isinstance(data, bytes):
        return {'length': len(data)}
    return json.loads(data)
`;

let client: TestClient;
const consumers = new TestConsumers();
let q: ConsumerQueues;
let seed: ConsumerQueues;

before(async () => {
  mkdirSync(join(dir, 'meta'));
  mkdirSync(join(dir, 'seed'));
  writeFileSync(join(dir, 'meta', 'score.py'), META_SCRIPT);
  writeFileSync(join(dir, 'seed', 'score.py'), SEED_STYLE_SCRIPT);
  client = await TestClient.connect();
  q = consumers.queuesFor('python-binary');
  seed = consumers.queuesFor('python-binary-seed');
  consumers.startOn(q, {
    ENTRY_SCRIPT: join(dir, 'meta', 'score.py'),
    CONCURRENCY: '1',
    MAX_BATCH_SIZE: '8',
    MAX_BATCH_DELAY_MS: '100',
    BATCH_DELAY_MIN_LOAD: '0',
  });
  consumers.startOn(seed, { ENTRY_SCRIPT: join(dir, 'seed', 'score.py'), CONCURRENCY: '1' });
  await consumers.allConsuming();
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a Python script receives bytes, the content type and the headers for a binary message, and a str for JSON', async () => {
  const replies = await client.ask(q.input, q.replies, [
    {
      id: 'png',
      body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 255]),
      options: {
        correlationId: 'png',
        contentType: 'image/png',
        headers: { 'x-camera': 'gate-3', raw: Buffer.from([0, 1, 255]) },
      },
    },
    { id: 'json', body: { data: [1, 2] } },
    {
      id: 'typed-json',
      body: { data: 'x' },
      options: { correlationId: 'typed-json', contentType: 'application/json', headers: { 'x-camera': 'gate-4' } },
    },
  ]);
  assert.deepEqual(replies.get('png')!.json(), {
    kind: 'bytes',
    bytes: [0x89, 0x50, 0x4e, 0x47, 0, 255],
    text: null,
    contentType: 'image/png',
    camera: 'gate-3',
    raw: [0, 1, 255],
  });
  assert.deepEqual(replies.get('json')!.json(), {
    kind: 'str',
    bytes: null,
    text: '[1,2]',
    contentType: 'application/json',
    camera: null,
    raw: null,
  });
  assert.deepEqual(replies.get('typed-json')!.json(), {
    kind: 'str',
    bytes: null,
    text: '"x"',
    contentType: 'application/json',
    camera: 'gate-4',
    raw: null,
  });
  assert.equal(replies.get('png')!.contentType, 'application/json');
});

test("a Python script's binary reply comes back with its content type and its bytes as they are", async () => {
  const replies = await client.ask(q.input, q.replies, [
    {
      id: 'bin',
      body: Buffer.from([1, 2, 3, 250]),
      options: { correlationId: 'bin', contentType: 'application/octet-stream', headers: { 'x-want': 'bytes' } },
    },
    { id: 'next', body: { data: 5 } },
  ]);
  const r = replies.get('bin')!;
  assert.equal(r.status, 'ok');
  assert.equal(r.contentType, 'application/octet-stream');
  assert.deepEqual([...r.content], [250, 3, 2, 1]);
  assert.equal(replies.get('next')!.contentType, 'application/json');
  assert.equal((replies.get('next')!.json() as { text: string }).text, '5');
});

test('a seed-style run(data) is called as before, with bytes for a binary message', async () => {
  const replies = await client.ask(seed.input, seed.replies, [
    { id: 'json', body: { data: { a: [1, 2] } }, options: { correlationId: 'json', headers: { 'x-trace': 'abc' } } },
    { id: 'bin', body: Buffer.from('a,b\n'), options: { correlationId: 'bin', contentType: 'text/csv' } },
  ]);
  assert.deepEqual(replies.get('json')!.json(), { a: [1, 2] });
  assert.deepEqual(replies.get('bin')!.json(), { length: 4 });
});
