/**
 * An entry script that exports `inputSchema` (JSON Schema) has `data` checked before `run`: a message
 * that fails it gets an error reply naming the field, and `run` never sees it. Its schemas also go
 * into the AsyncAPI document (`scorer asyncapi`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer, type ConsumerProcess } from '../support/consumer-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'scorer-input-schema-'));
const script = join(dir, 'score.ts');
const runLog = join(dir, 'run.log');
const input = uniqueName('schema');
const replies = uniqueName('schema.replies');
let client: TestClient;
let consumer: ConsumerProcess;

// run() writes down every data it is given, so the test can tell what reached it.
writeFileSync(
  script,
  `
import { appendFileSync } from 'node:fs';

export const modelName = 'credit';

export const inputSchema = {
  type: 'object',
  required: ['age', 'income'],
  properties: { age: { type: 'integer', minimum: 0 }, income: { type: 'number' } },
};

export const outputSchema = { type: 'object', required: ['score'], properties: { score: { type: 'number' } } };

export function init(): void {}

export function run(data: string): { score: number } {
  appendFileSync(process.env.RUN_LOG!, data + '\\n');
  const { age, income } = JSON.parse(data) as { age: number; income: number };
  return { score: income / (age + 1) };
}
`,
);

before(async () => {
  client = await TestClient.connect();
  consumer = startConsumer({
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    ENTRY_SCRIPT: script,
    RUN_LOG: runLog,
    CONCURRENCY: '1',
  });
  await consumer.waitFor('"msg":"consuming"', 60_000);
});

after(async () => {
  await consumer.stop();
  await client.deleteQueues(...queuesOf(input, replies));
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a message whose data fails the inputSchema gets a SCHEMA error reply naming the field, and run is not called for it', async () => {
  await client.publishMany(input, [
    { body: { data: { age: 30, income: 3100 } }, options: { correlationId: 'good' } },
    { body: { data: { age: 'thirty', income: 3100 } }, options: { correlationId: 'wrong-type' } },
    { body: { data: { income: 3100 } }, options: { correlationId: 'missing' } },
    { body: { data: { age: -1, income: 3100 } }, options: { correlationId: 'out-of-range' } },
  ]);
  const got = await client.collect(replies, (rs) => rs.length === 4);
  const reply = (id: string) => got.find((r) => r.correlationId === id)!;

  assert.equal(reply('good').status, 'ok');
  assert.deepEqual(reply('good').json(), { score: 100 });
  assert.equal(reply('good').headers['x-model'], 'credit');

  for (const [id, field] of [
    ['wrong-type', /data\/age must be integer/],
    ['missing', /data must have required property 'age'/],
    ['out-of-range', /data\/age must be >= 0/],
  ] as const) {
    assert.equal(reply(id).status, 'error', id);
    assert.equal(reply(id).headers['x-error-code'], 'SCHEMA', id);
    assert.match(reply(id).json() as string, field, id);
  }

  const seen = existsSync(runLog) ? readFileSync(runLog, 'utf8').trim().split('\n') : [];
  assert.deepEqual(
    seen.map((l) => JSON.parse(l)),
    [{ age: 30, income: 3100 }],
    'run saw only the valid data',
  );
});

test("scorer asyncapi documents the entry script's own inputSchema and outputSchema", async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/scorer.js', 'asyncapi'], {
    cwd: ROOT,
    env: { ...process.env, ENTRY_SCRIPT: script, RUN_LOG: runLog, INPUT_QUEUE: input },
  });
  const doc = JSON.parse(stdout) as {
    channels: { requests: { address: string } };
    components: { messages: Record<string, { payload: { properties?: { data?: unknown } } }> };
  };
  assert.equal(doc.channels.requests.address, input);
  assert.deepEqual(doc.components.messages.scoreRequest.payload.properties?.data, {
    type: 'object',
    required: ['age', 'income'],
    properties: { age: { type: 'integer', minimum: 0 }, income: { type: 'number' } },
  });
  assert.deepEqual(doc.components.messages.scoreResult.payload, {
    type: 'object',
    required: ['score'],
    properties: { score: { type: 'number' } },
  });
});
