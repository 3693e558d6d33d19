/**
 * CONTRACT §5, binary payloads for a user's entry script: a message whose contentType is not JSON
 * reaches run/runBatch as its bytes with its content type and headers; a JSON one as its data text;
 * a script's { contentType, body } result is replied with that content type.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TestClient } from '../support/broker.js';
import { TestConsumers, type ConsumerQueues } from '../support/consumer-process.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-binary-scripts-'));
const SCRIPT = `
export function init(): void {}

export function run(data: string | Uint8Array, meta: { contentType: string; headers: Record<string, unknown> }) {
  if (meta.headers['x-want'] === 'bytes') {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    return { contentType: 'application/octet-stream', body: bytes.slice().reverse() };
  }
  return {
    kind: data instanceof Uint8Array ? 'bytes' : typeof data,
    bytes: data instanceof Uint8Array ? [...data] : undefined,
    text: typeof data === 'string' ? data : undefined,
    contentType: meta.contentType,
    camera: meta.headers['x-camera'],
  };
}

export function runBatch(items: Array<string | Uint8Array>, metas: Array<{ contentType: string; headers: Record<string, unknown> }>) {
  return items.map((item, i) => run(item, metas[i]));
}
`;

let client: TestClient;
const consumers = new TestConsumers();
let q: ConsumerQueues;

before(async () => {
  writeFileSync(join(dir, 'score.ts'), SCRIPT);
  client = await TestClient.connect();
  q = consumers.queuesFor('binary-scripts');
  consumers.startOn(q, {
    ENTRY_SCRIPT: join(dir, 'score.ts'),
    CONCURRENCY: '1',
    MAX_BATCH_SIZE: '8',
    MAX_BATCH_DELAY_MS: '100',
    BATCH_DELAY_MIN_LOAD: '0',
  });
  await consumers.allConsuming();
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a user's script receives bytes and the content type for a binary message, and a string for JSON, in one batch", async () => {
  const replies = await client.ask(q.input, q.replies, [
    {
      id: 'png',
      body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 255]),
      options: { correlationId: 'png', contentType: 'image/png', headers: { 'x-camera': 'gate-3' } },
    },
    { id: 'json', body: { data: [1, 2] } },
    {
      id: 'typed-json',
      body: { data: 'x' },
      options: { correlationId: 'typed-json', contentType: 'application/json' },
    },
  ]);
  assert.deepEqual(replies.get('png')!.json(), {
    kind: 'bytes',
    bytes: [0x89, 0x50, 0x4e, 0x47, 0, 255],
    contentType: 'image/png',
    camera: 'gate-3',
  });
  assert.deepEqual(replies.get('json')!.json(), { kind: 'string', text: '[1,2]', contentType: 'application/json' });
  assert.deepEqual(replies.get('typed-json')!.json(), { kind: 'string', text: '"x"', contentType: 'application/json' });
  assert.equal(replies.get('png')!.contentType, 'application/json');
});

test('a binary reply comes back with its content type and its bytes as they are', async () => {
  const replies = await client.ask(q.input, q.replies, [
    {
      id: 'bin',
      body: Buffer.from([1, 2, 3, 250]),
      options: { correlationId: 'bin', contentType: 'application/octet-stream', headers: { 'x-want': 'bytes' } },
    },
  ]);
  const r = replies.get('bin')!;
  assert.equal(r.status, 'ok');
  assert.equal(r.contentType, 'application/octet-stream');
  assert.deepEqual([...r.content], [250, 3, 2, 1]);
});
