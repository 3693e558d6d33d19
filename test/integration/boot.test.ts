/**
 * CONTRACT §1 and §3: a boot that cannot succeed stops with one clear line on stderr and a non-zero
 * exit, having touched no message.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { topologyFor } from '../../src/broker/topology.js';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer } from '../support/consumer-process.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-boot-'));
let client: TestClient;

before(async () => {
  client = await TestClient.connect();
});

after(async () => {
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

function script(name: string, source: string): string {
  const path = join(dir, name);
  writeFileSync(path, source);
  return path;
}

/**
 * Declares the input queue as the consumer would (or as `declare` says), leaves one message in it,
 * starts the consumer, and checks that it exits non-zero with one stderr line matching `line`, and
 * that the message is still waiting. Returns the consumer's whole output.
 */
async function bootFails(
  env: Record<string, string>,
  line: RegExp,
  declare?: (input: string) => Promise<void>,
): Promise<string> {
  const input = uniqueName('boot');
  const replies = uniqueName('boot.replies');
  try {
    if (declare) await declare(input);
    else {
      const { inputArguments } = topologyFor({
        inputQueue: input,
        replyQueue: replies,
        queueType: 'quorum',
        deliveryLimit: 3,
      });
      const ch = await client.connection.createChannel();
      await ch.assertQueue(input, { durable: true, arguments: inputArguments });
      await ch.close();
    }
    await client.publish(input, { data: [[5.1, 3.5, 1.4, 0.2]] }, { correlationId: 'waiting' });

    const consumer = startConsumer({ INPUT_QUEUE: input, REPLY_QUEUE: replies, ...env });
    const code = await Promise.race([
      consumer.closed,
      new Promise((r) => setTimeout(() => r('still running after 40 s'), 40_000).unref()),
    ]);
    if (code === 'still running after 40 s') await consumer.stop('SIGKILL');
    assert.equal(code, 1, `exit code; output:\n${consumer.output()}`);
    const lines = consumer
      .stderr()
      .split('\n')
      .filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, `one line on stderr, got:\n${consumer.stderr()}`);
    assert.match(lines[0], line);
    assert.equal(await client.messageCount(input), 1, 'the message published before boot is still in the input queue');
    return consumer.output();
  } finally {
    await client.deleteQueues(...queuesOf(input, replies));
  }
}

// Each case has its own queues and its own consumer process: they can run side by side.
describe('a boot that cannot succeed', { concurrency: true }, () => {
  test('an init() that throws stops boot with one line naming the failure, and no message is touched', async () => {
    const path = script(
      'init-throws.ts',
      'export function init(): void {\n  throw new Error("weights.bin is missing\\n    at load (weights.ts:1)");\n}\nexport function run(data: string) { return data; }\n',
    );
    await bootFails(
      { ENTRY_SCRIPT: path },
      /^scorer: boot failed: entry script init\(\) failed: weights\.bin is missing at load \(weights\.ts:1\)$/,
    );
  });

  test('an async init() that rejects fails the same way', async () => {
    const path = script(
      'init-rejects.ts',
      'export async function init(): Promise<void> {\n  await new Promise((r) => setTimeout(r, 10));\n  throw new Error("model server said 403");\n}\nexport function run(data: string) { return data; }\n',
    );
    await bootFails(
      { ENTRY_SCRIPT: path },
      /^scorer: boot failed: entry script init\(\) failed: model server said 403$/,
    );
  });

  test('an init() that never returns stops boot after INIT_TIMEOUT_MS with one line naming the setting', async () => {
    const path = script(
      'init-hangs.ts',
      'export function init(): void {\n  for (;;) {}\n}\nexport function run(data: string) { return data; }\n',
    );
    await bootFails(
      { ENTRY_SCRIPT: path, INIT_TIMEOUT_MS: '2000' },
      /^scorer: boot failed: entry script init\(\) did not return within INIT_TIMEOUT_MS \(2000 ms\); its process was killed\. Raise INIT_TIMEOUT_MS if loading the model takes longer$/,
    );
  });

  test('a missing ENTRY_SCRIPT stops boot with one line naming the path', async () => {
    const missing = join(dir, 'no-such-score.ts');
    await bootFails(
      { ENTRY_SCRIPT: missing },
      new RegExp(`^scorer: boot failed: ENTRY_SCRIPT ${missing.replace(/[.]/g, '\\.')}: no such file$`),
    );
  });

  test('an entry script without run() stops boot with one line naming run()', async () => {
    const path = script(
      'no-run.ts',
      'export function init(): void {}\nexport function score(data: string) { return data; }\n',
    );
    await bootFails(
      { ENTRY_SCRIPT: path },
      /^scorer: boot failed: entry script .*no-run\.ts must export a function run\(\), found undefined$/,
    );
  });

  test('a model folder with several .onnx files stops boot with one line naming them: it will not guess which to score with', async () => {
    const models = join(dir, 'two-models');
    mkdirSync(models, { recursive: true });
    copyFileSync('models/iris.onnx', join(models, 'iris.onnx'));
    copyFileSync('models/iris.onnx', join(models, 'iris-v2.onnx'));
    await bootFails(
      { MODEL_DIR: models },
      new RegExp(
        `^scorer: boot failed: entry script init\\(\\) failed: model folder ${models.replace(/[.]/g, '\\.')} must hold exactly one \\.onnx file, found 2: (iris\\.onnx, iris-v2\\.onnx|iris-v2\\.onnx, iris\\.onnx)$`,
      ),
    );
  });

  test('a model folder with no .onnx file stops boot with one line saying so', async () => {
    const empty = join(dir, 'no-models');
    mkdirSync(empty, { recursive: true });
    writeFileSync(join(empty, 'README.txt'), 'not a model');
    await bootFails(
      { MODEL_DIR: empty },
      /^scorer: boot failed: entry script init\(\) failed: model folder .*no-models must hold exactly one \.onnx file, found 0$/,
    );
  });

  test('a bad config value (PREFETCH=0) stops boot with the one-line config error', async () => {
    await bootFails(
      { PREFETCH: '0' },
      /^scorer: boot failed: config PREFETCH: expected an integer from 1 to 65535, got "0"$/,
    );
  });

  test('an unreachable broker fails boot fast with one line that does not show the password', async () => {
    const password = 'not-guest-s3cret';
    const output = await bootFails(
      { AMQP_URL: `amqp://guest:${password}@127.0.0.1:1`, CONNECT_RETRIES_AT_BOOT: '1' },
      /^scorer: boot failed: broker amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1\b.*unreachable: .*ECONNREFUSED/,
    );
    assert.ok(!output.includes(password), 'the password is in no log line either');
  });

  test('an input queue that exists with other arguments stops boot with one line naming the argument and the way out', async () => {
    await bootFails(
      { QUEUE_TYPE: 'quorum', DELIVERY_LIMIT: '5' },
      /^scorer: boot failed: queue '.+' exists with x-delivery-limit = 3, but this consumer declares 5: set DELIVERY_LIMIT to match the queue/,
      async (input) => {
        const ch = await client.connection.createChannel();
        const { inputArguments } = topologyFor({
          inputQueue: input,
          replyQueue: 'unused',
          queueType: 'quorum',
          deliveryLimit: 3,
        });
        await ch.assertQueue(input, { durable: true, arguments: inputArguments });
        await ch.close();
      },
    );
  });
});
