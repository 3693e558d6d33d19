/**
 * CONTRACT §2: bad input gets an error reply and is acknowledged, never requeued in a loop, never a
 * crash; the consumer goes on with the next message.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TestClient, queuesOf, tally, uniqueName, type ReceivedReply } from '../support/broker.js';
import { startConsumer, type ConsumerProcess } from '../support/consumer-process.js';

const MAX_MESSAGE_BYTES = 256;
const GOOD_ROW = [5.1, 3.5, 1.4, 0.2];

/** Each class of bad input, sent to the built-in iris model, and what its error reply must say. */
const BAD: Array<{ id: string; what: string; body: Buffer | string | object; code: string; says: RegExp }> = [
  {
    id: 'invalid-utf8',
    what: 'a body that is not valid UTF-8',
    body: Buffer.from([0x7b, 0x22, 0x64, 0x61, 0x74, 0x61, 0x22, 0x3a, 0xff, 0xfe, 0x7d]),
    code: 'BAD_UTF8',
    says: /not valid UTF-8/,
  },
  {
    id: 'not-json',
    what: 'a body that is not JSON',
    body: 'data: [[5.1, 3.5, 1.4, 0.2]]',
    code: 'BAD_JSON',
    says: /not JSON/,
  },
  {
    id: 'json-array',
    what: 'a JSON array instead of an object',
    body: [GOOD_ROW],
    code: 'NOT_OBJECT',
    says: /must be a JSON object .*got an array/,
  },
  {
    id: 'json-number',
    what: 'a JSON number instead of an object',
    body: '42',
    code: 'NOT_OBJECT',
    says: /got a number/,
  },
  { id: 'json-null', what: 'JSON null instead of an object', body: 'null', code: 'NOT_OBJECT', says: /got null/ },
  {
    id: 'no-data',
    what: 'an object without a "data" key',
    body: { rows: [GOOD_ROW] },
    code: 'NO_DATA',
    says: /no "data" key/,
  },
  {
    id: 'too-deep',
    what: 'JSON nested deeper than 64 levels',
    body: `{"data": ${'['.repeat(80)}${']'.repeat(80)}}`,
    code: 'TOO_DEEP',
    says: /nested deeper than 64/,
  },
  {
    id: 'wrong-rank',
    what: 'data of the wrong rank (one row, not a list of rows)',
    body: { data: GOOD_ROW },
    code: 'SHAPE',
    says: /'float_input' expects rank 2 .*got rank 1/,
  },
  {
    id: 'wrong-width',
    what: 'a row of the wrong width',
    body: { data: [[5.1, 3.5, 1.4]] },
    code: 'SHAPE',
    says: /'float_input' expects shape \[-1,4\], got \[1,3\]/,
  },
  {
    id: 'wrong-type',
    what: 'a string where the model takes a float',
    body: { data: [[5.1, 'wide', 1.4, 0.2]] },
    code: 'TYPE',
    says: /'float_input' expects float32 elements, got string at \[0\]\[1\]/,
  },
  { id: 'empty-array', what: 'an empty array of rows', body: { data: [] }, code: 'SHAPE', says: /empty array/ },
  {
    id: 'ragged',
    what: 'a ragged array (rows of different lengths)',
    body: { data: [GOOD_ROW, [1, 2]] },
    code: 'SHAPE',
    says: /ragged/,
  },
  {
    id: 'over-size',
    what: 'a message over MAX_MESSAGE_BYTES',
    body: { data: [GOOD_ROW], note: 'x'.repeat(MAX_MESSAGE_BYTES) },
    code: 'TOO_LARGE',
    says: /over MAX_MESSAGE_BYTES \(256\)/,
  },
];

/** A user's entry script whose run() fails in the ways a user's code does. */
const FAILING_SCRIPT = `
export function init(): void {}
export function run(data: string): unknown {
  const value = JSON.parse(data) as string;
  if (value === 'throw') throw new Error('the model cannot score "throw"\\n    second line of the message');
  if (value === 'reject') return Promise.reject(new TypeError('scoring rejected'));
  if (value === 'throw-string') throw 'a bare string';
  if (value === 'bigint') return { score: 1n };
  if (value === 'hang') for (;;) {}
  return { echo: value };
}
`;
const FAILING: Array<{ id: string; what: string; code: string; says: RegExp }> = [
  {
    id: 'throw',
    what: 'a run() that throws',
    code: 'RUN_FAILED',
    says: /^the model cannot score "throw" second line of the message$/,
  },
  { id: 'reject', what: 'a run() that rejects', code: 'RUN_FAILED', says: /^scoring rejected$/ },
  {
    id: 'throw-string',
    what: 'a run() that throws a string, not an Error',
    code: 'RUN_FAILED',
    says: /^a bare string$/,
  },
  {
    id: 'bigint',
    what: 'a run() that returns what JSON cannot carry',
    code: 'BAD_RESULT',
    says: /JSON cannot carry.*BigInt/,
  },
  { id: 'hang', what: 'a run() that exceeds RUN_TIMEOUT_MS', code: 'TIMEOUT', says: /RUN_TIMEOUT_MS \(1000 ms\)/ },
];

const model = { input: uniqueName('bad'), replies: uniqueName('bad.replies') };
const script = { input: uniqueName('bad.script'), replies: uniqueName('bad.script.replies') };
const dir = mkdtempSync(join(tmpdir(), 'scorer-bad-input-'));
let client: TestClient;
const consumers: ConsumerProcess[] = [];
const modelReplies = new Map<string, ReceivedReply>();
const scriptReplies = new Map<string, ReceivedReply>();

let duplicated = 0;

async function exchange(
  q: { input: string; replies: string },
  items: Array<{ id: string; body: Buffer | string | object }>,
  into: Map<string, ReceivedReply>,
): Promise<void> {
  const ids = items.map(({ id }) => id);
  await client.publishMany(
    q.input,
    items.map(({ id, body }) => ({ body, options: { correlationId: id } })),
  );
  const got = await client.collect(q.replies, (rs) => tally(ids, rs).missing.length === 0, 20_000);
  duplicated += tally(ids, got).duplicated;
  for (const r of got) into.set(r.correlationId!, r);
}

before(async () => {
  client = await TestClient.connect();
  const scriptPath = join(dir, 'failing-score.ts');
  writeFileSync(scriptPath, FAILING_SCRIPT);
  consumers.push(
    startConsumer({
      INPUT_QUEUE: model.input,
      REPLY_QUEUE: model.replies,
      MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
    }),
    startConsumer({
      INPUT_QUEUE: script.input,
      REPLY_QUEUE: script.replies,
      ENTRY_SCRIPT: scriptPath,
      RUN_TIMEOUT_MS: '1000',
    }),
  );
  await Promise.all(consumers.map((c) => c.waitFor('"msg":"consuming"')));
  // The good message goes last: an answer to it shows the consumer went on after every bad one.
  await Promise.all([
    exchange(model, [...BAD, { id: 'good-after', body: { data: [GOOD_ROW] } }], modelReplies),
    exchange(
      script,
      [...FAILING.map(({ id }) => ({ id, body: { data: id } })), { id: 'good-after', body: { data: 'fine' } }],
      scriptReplies,
    ),
  ]);
});

after(async () => {
  await Promise.all(consumers.map((c) => c.stop()));
  await client.deleteQueues(...queuesOf(model.input, model.replies), ...queuesOf(script.input, script.replies));
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

function assertErrorReply(reply: ReceivedReply | undefined, code: string, says: RegExp): void {
  assert.ok(reply, 'a reply');
  assert.equal(reply.status, 'error');
  assert.equal(reply.headers['x-error-code'], code);
  assert.ok(!reply.body.includes('\n'), 'the body is one line');
  const text = reply.json();
  assert.equal(typeof text, 'string', `the body is a JSON string: ${reply.body}`);
  assert.match(text as string, says);
}

for (const { id, what, code, says } of BAD) {
  test(`${what} gets an x-status error reply naming the problem`, () =>
    assertErrorReply(modelReplies.get(id), code, says));
}

for (const { id, what, code, says } of FAILING) {
  test(`${what} gets an x-status error reply saying why`, () => assertErrorReply(scriptReplies.get(id), code, says));
}

test('the consumer goes on: a good message after the bad ones gets an ok reply', () => {
  const fromModel = modelReplies.get('good-after');
  assert.equal(fromModel?.status, 'ok');
  assert.deepEqual((fromModel.json() as { label: number[] }).label, [0]);
  const fromScript = scriptReplies.get('good-after');
  assert.equal(fromScript?.status, 'ok');
  assert.deepEqual(fromScript.json(), { echo: 'fine' });
});

test('every bad input is acked: after a graceful stop the input queues are empty, and no input was answered twice', async () => {
  // checkQueue counts ready messages only, so stop the consumers first: an input they held unacked
  // would go back to the queue, and one they requeued would have been scored and answered again.
  assert.deepEqual(
    await Promise.all(consumers.map((c) => c.stop())),
    [0, 0],
    'both consumers were still running, and stop cleanly',
  );
  for (const q of [model, script]) {
    assert.equal(await client.messageCount(q.input), 0, q.input);
    assert.equal(await client.messageCount(q.replies), 0, `no second reply in ${q.replies}`);
  }
  assert.equal(duplicated, 0);
  assert.equal(modelReplies.size, BAD.length + 1);
  assert.equal(scriptReplies.size, FAILING.length + 1);
});
